"""Production beans with ground truth, for `train.py --feedback`: each recorded bean whose true variety was
reported, read from the service's database (the service's own settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from api.errors import FEEDBACK_NO_SQLITE_FILE, FEEDBACK_UNREADABLE
from config import Settings
from data.schema import CLASSES, FEATURES
from db.engine import create_db_engine
from db.models import FEATURE_COLUMNS, Feedback, Prediction


class FeedbackUnavailable(RuntimeError):
    """The database holding the feedback cannot be read."""


@dataclass(frozen=True)
class LabelledBeans:
    """Beans (rows x FEATURES) and their true varieties."""

    features: npt.NDArray[np.float64]
    labels: npt.NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.labels)

    def outside(self, holdout: npt.NDArray[np.float64]) -> LabelledBeans:
        """These beans without those identical to a holdout row: a holdout bean must never be trained on."""
        seen = {row.tobytes() for row in np.ascontiguousarray(holdout, dtype=np.float64)}
        keep = np.array([row.tobytes() not in seen for row in self.features], dtype=bool)
        return LabelledBeans(self.features[keep], self.labels[keep])


def read_feedback_beans(settings: Settings) -> LabelledBeans:
    """Every recorded bean with all 16 features and a reported variety, oldest first; FeedbackUnavailable when
    the database cannot be read (down, or without the service's schema)."""
    url = settings.sqlalchemy_url
    where = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        # Connecting would create an empty file: say that there is no database instead.
        raise FeedbackUnavailable(FEEDBACK_NO_SQLITE_FILE.format(path=url.database))
    columns = [getattr(Prediction, column) for column in FEATURE_COLUMNS.values()]
    query = (select(*columns, Feedback.variety)
             .join(Feedback, Feedback.record_id == Prediction.id)
             .where(Feedback.variety.in_(CLASSES), *(column.is_not(None) for column in columns))
             .order_by(Prediction.id))
    engine = create_db_engine(settings, bounded=False, pooled=False)  # a one-off read, however long it takes
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        raise FeedbackUnavailable(FEEDBACK_UNREADABLE.format(database=where, reason=reason)) from None
    finally:
        engine.dispose()
    features = np.array([row[:len(FEATURES)] for row in rows], dtype=np.float64).reshape(len(rows), len(FEATURES))
    return LabelledBeans(features, np.array([row[-1] for row in rows], dtype=np.str_))

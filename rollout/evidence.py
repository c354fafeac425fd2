"""The compare route's evidence: the labels the champion and a challenger gave the same beans, read from
`shadow_predictions` with the reported true varieties, counted by rollout/compare.py, and each model's scoring time
per request.

A pair is stored in one of two directions: the champion answered and the challenger (a shadow) scored in the
background, or the challenger (a canary) answered and the champion gave its second opinion. Both are read,
oriented so that the champion's label and time come first. The database does the counting, in three passes over
the pairs of the two models (index (model_tag, id)): where the newest `limit` of them begin; their number by
(champion's label, challenger's label, true variety); the two scoring times of each request. A pair's request may
have no record (the client sent store: false): it counts for agreement, flips and latency, never as labelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Connection, and_, case, func, or_, select

from db.models import Feedback, Prediction, ShadowPrediction
from rollout.compare import Tally, compare, tally
from rollout.schemas import Latency, ModelComparison

PAIR = ShadowPrediction


@dataclass(frozen=True)
class Pairs:
    """The pairs of two models, in either direction, from `since` on, and their columns oriented."""

    champion: str
    challenger: str
    since: datetime | None  # naive UTC

    def where(self, first_id: int | None = None) -> list[ColumnElement[bool]]:
        """These pairs, from `first_id` on when given."""
        where = [or_(and_(PAIR.answered_tag == self.champion, PAIR.model_tag == self.challenger),
                     and_(PAIR.answered_tag == self.challenger, PAIR.model_tag == self.champion))]
        if self.since is not None:
            where.append(PAIR.created_at >= self.since)
        if first_id is not None:
            where.append(PAIR.id >= first_id)
        return where

    def champions(self, answered: Any, scored: Any) -> ColumnElement[Any]:
        """The champion's value: the answer's column where it answered, the background one's otherwise."""
        return case((PAIR.answered_tag == self.champion, answered), else_=scored)

    def challengers(self, answered: Any, scored: Any) -> ColumnElement[Any]:
        """The challenger's value."""
        return self.champions(scored, answered)


def compare_models(connection: Connection, champion: str, challenger: str, *, since: datetime | None, limit: int,
                   min_count: int) -> ModelComparison:
    """The challenger against the champion (both tags, drybean_svc:<version>) on the newest `limit` beans both
    scored, from `since` on (UTC; naive means UTC): agreement, flips, and on the labelled beans accuracy, recall and
    McNemar (figures need `min_count` labelled beans); each model's latency over the distinct requests."""
    pairs = Pairs(champion, challenger,
                  since.astimezone(UTC).replace(tzinfo=None) if since is not None and since.tzinfo else since)
    first_id = window_start(connection, pairs, limit)
    report = compare(count_pairs(connection, pairs, first_id), min_count=min_count, champion=champion,
                     challenger=challenger)
    times = request_times(connection, pairs, first_id)
    return ModelComparison(**report.model_dump(), since=since, limit=limit,
                           latency={"champion": latency(times[:, 0]), "challenger": latency(times[:, 1])})


def window_start(connection: Connection, pairs: Pairs, limit: int) -> int | None:
    """The id of the oldest of the newest `limit` pairs; None when there are no more than `limit`."""
    return connection.scalar(select(PAIR.id).where(*pairs.where()).order_by(PAIR.id.desc())
                             .offset(limit - 1).limit(1))


def count_pairs(connection: Connection, pairs: Pairs, first_id: int | None) -> Tally:
    """The pairs counted as rollout/compare.py counts them, with the true variety where one was reported."""
    champion, challenger = pairs.champions(PAIR.answered_name, PAIR.name), pairs.challengers(PAIR.answered_name,
                                                                                              PAIR.name)
    query = (select(champion, challenger, Feedback.variety, func.count())
             .select_from(PAIR)
             .outerjoin(Prediction, and_(Prediction.request_id == PAIR.request_id,
                                         Prediction.bean_index == PAIR.bean_index))
             .outerjoin(Feedback, Feedback.record_id == Prediction.id)
             .where(*pairs.where(first_id))
             .group_by(champion, challenger, Feedback.variety))
    rows = connection.execute(query).all()
    if not rows:
        return Tally.empty()
    champions, challengers, truth, beans = (np.array(column, object) for column in zip(*rows, strict=True))
    beans = beans.astype(np.int64)
    return tally(np.repeat(champions, beans), np.repeat(challengers, beans), list(np.repeat(truth, beans)))


def request_times(connection: Connection, pairs: Pairs, first_id: int | None) -> npt.NDArray[np.float64]:
    """The champion's and the challenger's scoring time of each request, one row each."""
    query = (select(func.min(pairs.champions(PAIR.answered_seconds, PAIR.seconds)),
                    func.min(pairs.challengers(PAIR.answered_seconds, PAIR.seconds)))
             .where(*pairs.where(first_id)).group_by(PAIR.request_id))
    return np.array(connection.execute(query).all(), np.float64).reshape(-1, 2)


def latency(seconds: npt.NDArray[np.float64]) -> Latency:
    """A model's scoring times, one per request timed (NaN: scored in a background batch, not timed alone), as the
    median and 99th percentile in milliseconds."""
    seconds = seconds[~np.isnan(seconds)]
    if not len(seconds):
        return Latency(requests=0, median_ms=None, p99_ms=None)
    return Latency(requests=len(seconds), median_ms=float(np.median(seconds)) * 1000,
                   p99_ms=float(np.percentile(seconds, 99)) * 1000)

"""Models from a BentoML model store, checked as the service checks its own: for the command-line tools (score.py,
the backtest) and Spark's executors, which load one model by tag and must say why when they cannot."""

from __future__ import annotations

import os
from pathlib import Path

import bentoml
from bentoml._internal.models.model import ModelStore  # a store at a given BENTOML_HOME, as the tests open one
from bentoml.exceptions import BentoMLException

from api import errors
from model.classifier import Classifier, ModelMismatch


class ModelUnavailable(LookupError):
    """The model is not in the model store, or cannot be used; the message says which, and what the store holds."""


def load_tag(tag: str, home: str | None = None) -> Classifier:
    """The model `tag` from the store at `home` (default: BENTOML_HOME's, as bentoml finds it)."""
    store = ModelStore(Path(home) / "models") if home else None
    try:
        model = bentoml.models.get(tag, _model_store=store) if store else bentoml.models.get(tag)
    except (BentoMLException, ValueError):  # not found, or not a tag at all
        held = bentoml.models.list(_model_store=store) if store else bentoml.models.list()
        known = ", ".join(sorted(str(stored.tag) for stored in held)) or "nothing"
        shown_home = home or os.environ.get("BENTOML_HOME", str(Path.home() / "bentoml"))
        raise ModelUnavailable(errors.UNKNOWN_CANDIDATE.format(tag=errors.shown(tag), home=shown_home,
                                                               known=known)) from None
    return load_model(model)


def load_model(model: bentoml.Model, shown_as: str | None = None) -> Classifier:
    """A model already found in a store, checked; the error names it `shown_as` (default: its tag)."""
    try:
        return Classifier.from_metadata(bentoml.sklearn.load_model(model), str(model.tag), model.info.metadata)
    except (BentoMLException, ModelMismatch, OSError, ValueError) as error:
        raise ModelUnavailable(errors.UNUSABLE_CANDIDATE.format(tag=shown_as or model.tag, reason=error)) from None

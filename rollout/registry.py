"""Every loaded version of drybean_svc, and which one scores a request: the champion, the canary for its share of
client keys, a version the client named; and who gives a second opinion in the background.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from api import errors
from model import MODEL_NAME
from rollout.guard import ScoringStats
from rollout.roles import Roles, in_bucket
from rollout.shadow import ShadowJob, ShadowScorer
from serving.recording import new_request_id

if TYPE_CHECKING:
    import bentoml

    from model.classifier import Classifier

logger = logging.getLogger("drybeans")
@dataclass(frozen=True)
class Choice:
    """Who answers a request, under which id, and who scores it again in the background (if anyone)."""

    classifier: Classifier
    request_id: str
    second_opinion: Classifier | None


@dataclass(frozen=True)
class Scored:
    """One request's answer: the model that gave it, its labels and scores, its scoring time, the request's id, and
    the model that will score it again in the background (if any)."""

    classifier: Classifier
    labels: npt.NDArray[np.str_]
    scores: npt.NDArray[np.float64]
    seconds: float
    request_id: str
    second_opinion: Classifier | None


def stored_models(tags: Sequence[str] | None) -> list[bentoml.Model]:
    """The models to serve: `tags` in that order, or every drybean_svc in the model store, the newest first."""
    import bentoml

    if tags:
        return [bentoml.models.get(tag) for tag in tags]
    return sorted(bentoml.models.list(MODEL_NAME), key=lambda model: model.info.creation_time, reverse=True)


def load(models: Sequence[bentoml.Model]) -> dict[str, Classifier]:
    """Each model as the service answers with it, by version; one that does not fit this service is skipped with a
    warning (an old model in the store must not stop the service), unless it is the only one."""
    import bentoml

    from model.classifier import Classifier, ModelMismatch

    loaded: dict[str, Classifier] = {}
    for model in models:
        try:
            classifier = Classifier.from_metadata(bentoml.sklearn.load_model(model), str(model.tag),
                                                  model.info.metadata)
        except ModelMismatch as mismatch:
            if len(models) == 1:
                raise
            logger.warning("not serving %s: %s", model.tag, mismatch)
            continue
        loaded[classifier.version] = classifier
    if not loaded:
        raise ModelMismatch("no model in the store fits this service: retrain it with this version of train.py")
    return loaded


class Models:
    """The loaded models and the roles in force in this worker."""

    def __init__(self, classifiers: dict[str, Classifier], roles: Roles, shadow: ShadowScorer,
                 stats: ScoringStats) -> None:
        self._classifiers = classifiers
        self._shadow = shadow
        self.stats = stats
        self.roles = Roles(champion=next(iter(classifiers)))
        self.apply(roles)

    @property
    def versions(self) -> list[str]:
        """The loaded versions, in load order."""
        return list(self._classifiers)

    @property
    def champion(self) -> Classifier:
        """The model that answers by default."""
        return self._classifiers[self.roles.champion]

    def get(self, version: str) -> Classifier:
        """A loaded model; UnknownModel naming the loaded versions otherwise."""
        try:
            return self._classifiers[version]
        except KeyError:
            raise errors.UnknownModel(errors.UNKNOWN_MODEL.format(version=errors.shown(version),
                                                                  loaded=", ".join(self._classifiers))) from None

    def apply(self, roles: Roles) -> None:
        """Put `roles` in force. Roles naming a model this pod did not load keep this pod's champion, and drop the
        shadow or canary it cannot run (an image that lags behind the database keeps answering)."""
        loaded = self._classifiers
        if roles.champion not in loaded:
            logger.error(errors.NOT_IN_THIS_POD.format(version=roles.champion, kept=self.roles.champion))
            roles = Roles(**{**roles.__dict__, "champion": self.roles.champion})
        if roles.shadow is not None and roles.shadow not in loaded:
            roles = Roles(**{**roles.__dict__, "shadow": None, "shadow_share": 0.0})
        if roles.canary is not None and roles.canary not in loaded:
            roles = Roles(**{**roles.__dict__, "canary": None, "canary_share": 0.0})
        if roles.canary != self.roles.canary and roles.canary is not None:
            self.stats.reset(loaded[roles.canary].tag)  # a new canary is judged on its own requests
        self.roles = roles  # one assignment: a request reads either the old roles or the new, whole

    def choose(self, client_key: str | None = None, version: str | None = None, *,
               explain: bool = False) -> Choice:
        """The model to answer a request: the version it names; else the canary for its share of keys (the client's
        key, or the request id), unless the request wants explanations the canary cannot give; else the champion,
        with the shadow for its share of keys. Reads the roles once, so a change never splits a request."""
        request_id = new_request_id()
        roles, champion = self.roles, self.champion
        if version is not None:
            return Choice(self.get(version), request_id, None)
        key = client_key or request_id
        if roles.canary is not None and in_bucket(key, roles.canary_share, "canary"):
            canary = self._classifiers[roles.canary]
            if canary.explains or not explain:
                return Choice(canary, request_id, champion)
        shadow = (self._classifiers[roles.shadow] if roles.shadow is not None
                  and in_bucket(key, roles.shadow_share, "shadow") else None)
        return Choice(champion, request_id, shadow)

    def score(self, choice: Choice, rows: npt.NDArray[np.float64]) -> Scored:
        """Score the rows with the chosen model, timed; a canary that raises is counted against it, and the
        champion answers instead."""
        classifier = choice.classifier
        start = time.perf_counter()
        try:
            labels, scores = classifier.classify(rows)
        except Exception:
            if classifier.version != self.roles.canary:
                raise
            logger.exception("canary %s failed; the champion answers", classifier.tag)
            self.stats.failed(classifier.tag)
            return self.score(Choice(self.champion, choice.request_id, None), rows)
        seconds = time.perf_counter() - start
        self.stats.scored(classifier.tag, seconds)
        return Scored(classifier, labels, scores, seconds, choice.request_id, choice.second_opinion)

    def close(self, timeout: float) -> None:
        """Score and record the second opinions still queued, for at most `timeout` seconds."""
        self._shadow.close(timeout)

    def ask_second_opinion(self, scored: Scored, rows: npt.NDArray[np.float64]) -> None:
        """Hand the request to the background scorer when another model is to score it (never waits)."""
        if scored.second_opinion is not None:
            self._shadow.submit(ShadowJob(scored.request_id, rows, scored.classifier.tag, scored.labels,
                                          scored.seconds, scored.second_opinion))

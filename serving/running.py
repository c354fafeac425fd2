"""The running service as the routes, shortcuts and probes see it: one typed interface, found in one place.

BentoML hands a worker's service instance to code outside the service class as `Any`
(`bentoml.get_current_service()`); `running_service()` gives it this type instead, and service.py has the type
checker hold `DryBeans` to it, so that a renamed attribute fails `make lint`, not a request.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import bentoml
from bentoml.exceptions import BentoMLException

from api import errors

if TYPE_CHECKING:  # for the types only: the worker has imported them all by the time anything calls here
    import numpy as np
    import numpy.typing as npt
    from sqlalchemy import Engine

    from api.schemas import ClassifyRequest, Readiness
    from db.writer import GroupCommitWriter
    from model.classifier import Classifier
    from rollout.registry import Models
    from serving.answers import Answered
    from serving.recording import Recorded


class RunningService(Protocol):
    """What code outside service.py uses of the worker's `DryBeans` instance."""

    engine: Engine
    writer: GroupCommitWriter
    models: Models
    max_beans: int
    trained_at: dict[str, datetime]  # model version -> when it was saved
    roles_cache: Path
    bento_service: Any  # set by BentoML: the Service object, whose OpenAPI document the console serves

    @property
    def classifier(self) -> Classifier:
        """The champion."""
        ...

    async def score_and_record(self, rows: npt.NDArray[np.float64], *, store: bool, client_key: str | None = None,
                               version: str | None = None, explain: bool = False, want_ids: bool = False,
                               coverage: float | None = ...) -> Answered:
        """Choose the model, score, assess, record, and hand the request to the shadow."""
        ...

    async def tutorial_prediction(self, data: str | list[Any], store: bool,
                                  client_key: str | None = None) -> tuple[str, Recorded]:
        """`/predict`'s labels as a JSON-encoded string, and what became of the records."""
        ...

    async def classification(self, request: ClassifyRequest, client_key: str | None = None) -> bytes:
        """`/v1/classify`'s answer, as JSON."""
        ...

    async def readiness(self) -> Readiness:
        """Whether predictions can be served and recorded."""
        ...

    def alive(self) -> bool:
        """Whether the worker can still record predictions."""
        ...


def running_service() -> RunningService:
    """This worker's service instance, for a route; NotStarted (503, retry) while BentoML has not made it yet."""
    service = service_if_started()
    if service is None:
        raise errors.NotStarted(errors.SERVICE_STARTING)
    return service


def service_if_started() -> RunningService | None:
    """This worker's service instance, or None while BentoML has not made it yet (a middleware then lets the
    application answer, or says it is not ready)."""
    try:
        return cast("RunningService | None", bentoml.get_current_service())
    except BentoMLException:
        return None

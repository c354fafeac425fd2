"""HTTP endpoints: report true varieties, read live quality and drift. Mounted on the service's FastAPI app.

The handlers find the worker's service instance with `bentoml.get_current_service()` and use its engine, its
classifier's tag and its model's metadata. Database reads run in a thread, off the event loop; feedback goes
through the worker's group-commit writer, the durable path predictions take.
"""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import bentoml
from fastapi import APIRouter, Query, Response
from starlette.responses import JSONResponse

from api import errors
from api.errors import error_response, logger
from config import get_settings
from db import feedback as store
from db.writer import GroupCommitWriter, WriteFailed
from monitoring import live, metrics
from monitoring.schemas import DriftReport, FeedbackItem, FeedbackRequest, FeedbackResponse, QualityReport, Since

MAX_NAMED = 20  # records named in an error message; the message counts the rest
FEEDBACK_UNAVAILABLE = "the database is unavailable and the local spool cannot take the report ({reason}); retry later"
T = TypeVar("T")

router = APIRouter(tags=["Monitoring"], lifespan=metrics.refreshing)


class UnknownRecords(errors.ApiError):
    """Feedback names predictions that are not recorded."""

    status = 404
    code = "not_found"


class FeedbackConflict(errors.ApiError):
    """Feedback contradicts a true variety already reported."""

    status = 409
    code = "conflict"


class NotStarted(errors.ApiError):
    """The worker's service instance is not created yet."""

    status = 503
    code = "starting"


@router.post("/v1/feedback", response_model=FeedbackResponse, responses={202: {
    "model": FeedbackResponse, "description": "Spooled: the database is down; the report is checked when replayed"}})
async def report_feedback(request: FeedbackRequest, response: Response) -> FeedbackResponse | JSONResponse:
    """Report the true variety of recorded beans. Repeating a report changes nothing; a report that contradicts
    one already stored is refused (409), as is one naming an unknown record (404): then nothing is stored.

    While the database is down, the report is spooled on local disk like predictions (202, `stored: spooled`)
    and checked when it is replayed: a bean already reported keeps its first variety, and an item naming no
    recorded prediction is dropped, with a warning in the log."""
    limit = get_settings().max_beans_per_request
    if len(request.items) > limit:
        return _answer(errors.TooLarge(errors.TOO_MANY_REPORTS.format(count=len(request.items), limit=limit)))
    service = bentoml.get_current_service()
    if service is None:
        return _answer(NotStarted(errors.SERVICE_STARTING))
    records = [_record(item, datetime.now(UTC).replace(tzinfo=None)) for item in request.items]
    try:
        answer = await _report(service.writer, records)
    except errors.ApiError as error:
        return _answer(error)
    if answer.stored == "spooled":
        response.status_code = 202
    return answer


@router.get("/v1/quality", response_model=QualityReport)
async def quality(
    since: Annotated[Since, Query(description="only beans predicted from then on (ISO 8601; UTC if no offset is "
                                              "given; 1000-01-01 to 9999-12-31)")] = None,
    model: Annotated[str | None, Query(min_length=1, max_length=128, description="model tag; default: the "
                                                                                  "serving model")] = None,
) -> QualityReport | JSONResponse:
    """Accuracy, per-variety precision, recall and F1, and the confusion matrix on the beans whose true variety
    was reported, each figure with its count and its training value; null below the minimum count. For the serving
    model, also the live coverage of its prediction sets (0.95) on the newest reports, and its accuracy, precision
    and recall estimated without labels from its calibrated probabilities of the newest recorded beans."""
    settings = get_settings()
    return await _answering(lambda service: live.quality(
        service.engine, service.classifier, model=model or service.classifier.tag, since=since,
        min_count=settings.quality_min_count, window=settings.drift_window))


@router.get("/v1/drift", response_model=DriftReport)
async def drift(
    window: Annotated[int | None, Query(ge=10, le=get_settings().drift_max_window, description="how many of the "
                                        "newest records to compare with the training data")] = None,
) -> DriftReport | JSONResponse:
    """The newest recorded beans against the training data: PSI per feature (flagged above the threshold), the
    shift of the predicted varieties from the training class priors, and the share outside the training range."""
    settings = get_settings()
    return await _answering(lambda service: live.drift(
        service.engine, service.classifier.tag, service.classifier.metadata,
        window=window or settings.drift_window, threshold=settings.drift_psi_threshold))


async def _answering(work: Callable[[Any], T]) -> T | JSONResponse:
    """Run `work(service)` in a thread; an ApiError becomes its JSON answer. A database error goes on to the app's
    handler (503)."""
    service = bentoml.get_current_service()
    if service is None:
        return _answer(NotStarted(errors.SERVICE_STARTING))
    try:
        return await asyncio.to_thread(work, service)
    except errors.ApiError as error:
        return _answer(error)


def _answer(error: errors.ApiError) -> JSONResponse:
    (logger.warning if error.status >= 500 else logger.info)("answered %d %s: %s", error.status, error.code,
                                                             error.message)
    return error_response(error)


def _record(item: FeedbackItem, now: datetime) -> store.FeedbackRecord:
    return store.FeedbackRecord(variety=item.variety, reported_at=now, record_id=item.record_id,
                                request_id=item.request_id, bean_index=item.bean_index)


async def _report(writer: GroupCommitWriter, records: list[store.FeedbackRecord]) -> FeedbackResponse:
    """Store the report through the worker's writer: checked and committed, or spooled unchecked."""
    try:
        written = await writer.write_feedback(records)
    except store.UnknownRecords as unknown:
        raise UnknownRecords(errors.UNKNOWN_RECORDS.format(records=_listed(map(_named, unknown.keys)))) from None
    except store.ConflictingFeedback as conflict:
        raise FeedbackConflict(errors.FEEDBACK_CONFLICT.format(conflicts=_listed(
            f"record {c.record_id} is reported as {c.stored}, not {c.reported}" for c in conflict.conflicts)),
        ) from None
    except store.ReportRaced:
        raise FeedbackConflict(errors.FEEDBACK_CONFLICT.format(
            conflicts="these records are being reported right now")) from None
    except WriteFailed as failure:
        raise errors.StoreUnavailable(FEEDBACK_UNAVAILABLE.format(reason=failure)) from None
    if (receipt := written.receipt) is None:
        return FeedbackResponse(stored="spooled", recorded=None, already_known=None)
    return FeedbackResponse(stored="committed", recorded=receipt.recorded, already_known=receipt.already_known)


def _named(key: store.FeedbackKey) -> str:
    return f"record {key}" if isinstance(key, int) else f"request {key[0]} bean {key[1]}"


def _listed(items: Any) -> str:
    names = list(items)
    more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
    return ", ".join(names[:MAX_NAMED]) + more

"""HTTP endpoints: report true varieties, read live quality and drift. Mounted on the service's FastAPI app.

The handlers use the running service's engine, its classifier's tag and its model's metadata
(serving/running.py). Database reads run in a thread, off the event loop; feedback goes
through the worker's group-commit writer, the durable path predictions take.
"""

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Response

from api import errors
from config import get_settings
from db import feedback as store
from db.writer import GroupCommitWriter, WriteFailed
from monitoring import live, metrics
from monitoring.schemas import DriftReport, FeedbackItem, FeedbackRequest, FeedbackResponse, QualityReport, Since
from serving.running import RunningService, running_service

MAX_NAMED = 20  # records named in an error message; the message counts the rest
T = TypeVar("T")

router = APIRouter(tags=["Monitoring"], lifespan=metrics.refreshing)


@router.post("/v1/feedback", response_model=FeedbackResponse, responses={202: {
    "model": FeedbackResponse, "description": "Spooled: the database is down; the report is checked when replayed"}})
async def report_feedback(request: FeedbackRequest, response: Response) -> FeedbackResponse:
    """Report the true variety of recorded beans. Repeating a report changes nothing; a report that contradicts
    one already stored is refused (409), as is one naming an unknown record (404): then nothing is stored.

    While the database is down, the report is spooled on local disk like predictions (202, `stored: spooled`)
    and checked when it is replayed: a bean already reported keeps its first variety, and an item naming no
    recorded prediction is dropped, with a warning in the log."""
    limit = get_settings().max_beans_per_request
    if len(request.items) > limit:
        raise errors.TooLarge(errors.TOO_MANY_REPORTS.format(count=len(request.items), limit=limit))
    service = running_service()
    records = [_record(item, datetime.now(UTC).replace(tzinfo=None)) for item in request.items]
    answer = await _report(service.writer, records)
    if answer.stored == "spooled":
        response.status_code = 202
    return answer


@router.get("/v1/quality", response_model=QualityReport)
async def quality(
    since: Annotated[Since, Query(description="only beans predicted from then on (ISO 8601; UTC if no offset is "
                                              "given; 1000-01-01 to 9999-12-31)")] = None,
    model: Annotated[str | None, Query(min_length=1, max_length=128, description="model tag; default: the "
                                                                                  "serving model")] = None,
) -> QualityReport:
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
    window: Annotated[int | None, Query(ge=10, description="how many of the newest records to compare with the "
                                        "training data; at most DRYBEANS_DRIFT_MAX_WINDOW")] = None,
) -> DriftReport:
    """The newest recorded beans against the training data: PSI per feature (flagged above the threshold), the
    shift of the predicted varieties from the training class priors, and the share outside the training range."""
    settings = get_settings()
    if window is not None and window > settings.drift_max_window:
        raise errors.InvalidInput(errors.WINDOW_TOO_LARGE.format(window=window, limit=settings.drift_max_window))
    return await _answering(lambda service: live.drift(
        service.engine, service.classifier.tag, service.classifier.metadata,
        window=window or settings.drift_window, threshold=settings.drift_psi_threshold))


async def _answering(work: Callable[[RunningService], T]) -> T:
    """Run `work(service)` in a thread, off the event loop. Its errors go on to the app's handlers: an ApiError's
    answer, or 503 for a database error."""
    return await asyncio.to_thread(work, running_service())


def _record(item: FeedbackItem, now: datetime) -> store.FeedbackRecord:
    return store.FeedbackRecord(variety=item.variety, reported_at=now, record_id=item.record_id,
                                request_id=item.request_id, bean_index=item.bean_index)


async def _report(writer: GroupCommitWriter, records: list[store.FeedbackRecord]) -> FeedbackResponse:
    """Store the report through the worker's writer: checked and committed, or spooled unchecked."""
    try:
        written = await writer.write_feedback(records)
    except store.UnknownRecords as unknown:
        raise errors.UnknownRecords(errors.UNKNOWN_RECORDS.format(records=_listed(map(_named, unknown.keys)))) from None
    except store.ConflictingFeedback as conflict:
        raise errors.FeedbackConflict(errors.FEEDBACK_CONFLICT.format(conflicts=_listed(
            f"record {c.record_id} is reported as {c.stored}, not {c.reported}" for c in conflict.conflicts)),
        ) from None
    except store.ReportRaced:
        raise errors.FeedbackConflict(errors.FEEDBACK_CONFLICT.format(
            conflicts="these records are being reported right now")) from None
    except WriteFailed as failure:
        raise errors.StoreUnavailable(errors.FEEDBACK_UNAVAILABLE.format(reason=failure)) from None
    if (receipt := written.receipt) is None:
        return FeedbackResponse(stored="spooled", recorded=None, already_known=None)
    return FeedbackResponse(stored="committed", recorded=receipt.recorded, already_known=receipt.already_known)


def _named(key: store.FeedbackKey) -> str:
    return f"record {key}" if isinstance(key, int) else f"request {key[0]} bean {key[1]}"


def _listed(items: Iterable[str]) -> str:
    names = list(items)
    more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
    return ", ".join(names[:MAX_NAMED]) + more

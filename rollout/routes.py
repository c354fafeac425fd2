"""The operator API: the loaded models and their roles, role changes (scope `operate`), the audit log and the
comparison of a challenger with the champion (scope `read`). Mounted on the service's FastAPI app.

Database work runs in a thread, off the event loop. Errors are the service's JSON errors (api/errors.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request

from config import get_settings
from rollout import control, evidence, stored_roles
from rollout.roles import Action
from rollout.schemas import AuditEntry, AuditLog, LoadedModel, ModelComparison, ModelList, RoleChangeRequest
from serving.auth import token_name
from serving.running import RunningService, running_service

router = APIRouter(prefix="/v1/models", tags=["Models"])
Version = Annotated[str, Path(max_length=64, description="a loaded version of drybean_svc (GET /v1/models)")]
Change = Annotated[RoleChangeRequest | None, Body()]


def model_list(service: RunningService) -> ModelList:
    """Every loaded model with its role."""
    models = service.models
    roles = models.roles
    return ModelList(models=[_loaded(models.get(version), roles.role(version), roles.share(version),
                                     service.trained_at.get(version))
                             for version in models.versions],
                     revision=roles.revision, previous_champion=roles.previous_champion)


def _loaded(classifier: Any, role: Any, share: float | None, trained_at: datetime | None) -> LoadedModel:
    metadata = classifier.metadata
    metrics = metadata.get("metrics", {})
    holdout = {key: metrics[key] for key in ("holdout_accuracy", "macro_f1", "cv_accuracy_mean", "training_beans",
                                             "holdout_beans") if key in metrics}
    return LoadedModel(version=classifier.version, tag=classifier.tag, role=role, share=share, trained_at=trained_at,
                       kernel=metadata.get("params", {}).get("kernel"), holdout=holdout)


@router.get("")
async def list_models() -> ModelList:
    """Every loaded model: its role (champion, shadow, canary or idle), share, training date and holdout figures."""
    return model_list(running_service())


@router.get("/audit")
async def audit(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> AuditLog:
    """The role changes, newest first: what, when, by which token, why."""
    service = running_service()

    def read() -> Sequence[Any]:
        with service.engine.connect() as connection:
            return stored_roles.history(connection, limit)

    rows = await asyncio.to_thread(read)
    return AuditLog(entries=[AuditEntry.model_validate(row, from_attributes=True) for row in rows])


@router.get("/compare")
async def compare(
    challenger: Annotated[str, Query(max_length=64, description="the shadow's or canary's version")],
    since: Annotated[datetime | None, Query(description="only beans scored from then on (ISO 8601; UTC if no "
                                                        "offset)")] = None,
    limit: Annotated[int, Query(ge=1, le=1_000_000, description="the newest this many paired beans")] = 100_000,
) -> ModelComparison:
    """The challenger against the champion on the beans both scored: agreement, flips, latency; on the labelled
    ones both accuracies, per-variety recall and an exact McNemar test with its verdict."""
    service = running_service()
    models = service.models
    challenger_tag, champion_tag = models.get(challenger).tag, models.champion.tag
    naive = since.astimezone(UTC).replace(tzinfo=None) if since and since.tzinfo else since

    def read() -> ModelComparison:
        with service.engine.connect() as connection:
            return evidence.compare_models(connection, champion_tag, challenger_tag, since=naive, limit=limit,
                                           min_count=get_settings().quality_min_count)

    return await asyncio.to_thread(read)


async def _change(request: Request, action: Action, version: str | None, body: RoleChangeRequest | None) -> ModelList:
    service = running_service()
    await asyncio.to_thread(control.change, service.engine, service.models, service.roles_cache, action, version,
                            body or RoleChangeRequest(), token_name(request))
    return model_list(service)


@router.post("/rollback")
async def rollback(request: Request, body: Change = None) -> ModelList:
    """The previous champion answers again."""
    return await _change(request, "rollback", None, body)


@router.post("/{version}/shadow")
async def shadow(request: Request, version: Version, body: Change = None) -> ModelList:
    """The model scores `share` of the requests (default all) in the background; its answers are recorded apart,
    never returned."""
    return await _change(request, "shadow", version, body)


@router.post("/{version}/canary")
async def canary(request: Request, version: Version, body: Change = None) -> ModelList:
    """The model answers `share` of the requests (at most 0.5), chosen by a stable hash of X-Client-Key (or of
    the request id); the champion scores the same beans in the background, for the comparison."""
    return await _change(request, "canary", version, body)


@router.post("/{version}/promote")
async def promote(request: Request, version: Version, body: Change = None) -> ModelList:
    """The model answers every request; the champion it replaces is kept for a rollback. A model never shadowed
    or canaried needs `force`."""
    return await _change(request, "promote", version, body)


@router.post("/{version}/idle")
async def retire(request: Request, version: Version, body: Change = None) -> ModelList:
    """The model stops shadowing or answering as canary; it stays loaded."""
    return await _change(request, "idle", version, body)

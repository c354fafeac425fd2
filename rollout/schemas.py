"""The operator API's bodies: the loaded models and their roles, role changes, the audit log, the comparison."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rollout.compare import Comparison
from rollout.roles import Action, Role


class LoadedModel(BaseModel):
    """One model this service loaded, and its role."""

    version: str = Field(description="the version of drybean_svc, as the routes name it")
    tag: str = Field(description="drybean_svc:<version>, as answers and records name it")
    role: Role
    share: float | None = Field(description="the share of requests it scores (shadow) or answers (canary)")
    trained_at: datetime | None = Field(description="when train.py saved it (UTC)")
    kernel: str | None = Field(description="the SVC's kernel: linear models explain their labels")
    holdout: dict[str, Any] = Field(description="its figures on train.py's holdout: accuracy, macro F1, ...")


class ModelList(BaseModel):
    """Every loaded model with its role, and the roles' revision (0: never changed)."""

    models: list[LoadedModel]
    revision: int
    previous_champion: str | None = Field(description="the version POST /v1/models/rollback returns to")


class RoleChangeRequest(BaseModel):
    """Optional details of a role change."""

    model_config = ConfigDict(extra="forbid")

    share: float | None = Field(None, description="shadow: share of requests scored (0, 1], default 1; canary: "
                                                  "share answered (0, 0.5], required")
    force: bool = Field(False, description="promote a model that was never shadowed or canaried")
    reason: str = Field("", max_length=500, description="why, for the audit log")


class AuditEntry(BaseModel):
    """One change of the roles: what, when, by which token, why, and the roles it left."""

    revision: int
    action: Action
    version: str | None
    champion: str
    previous_champion: str | None
    shadow: str | None
    shadow_share: float | None
    canary: str | None
    canary_share: float | None
    actor: str = Field(description="the token's name; 'guard' for an automatic rollback")
    reason: str
    created_at: datetime | None


class AuditLog(BaseModel):
    """Role changes, newest first."""

    entries: list[AuditEntry]


class Latency(BaseModel):
    """A model's scoring time per request, over the requests both models scored."""

    requests: int
    median_ms: float | None
    p99_ms: float | None


class ModelComparison(Comparison):
    """The challenger against the champion on the beans both scored (the shadow's, or the canary's with the
    champion's second opinion), in the window."""

    latency: dict[str, Latency] = Field(description="'champion' and 'challenger'")
    since: datetime | None
    limit: int = Field(description="the newest this many paired beans at most")

"""Role changes an operator asks for: checked against the roles in the database, stored as the next revision, in
force in this worker at once and in every other within a poll."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from api import errors
from rollout import roles, stored_roles
from rollout.registry import Models
from rollout.roles import Action, Roles
from rollout.schemas import RoleChangeRequest
from rollout.sync import save_cache


def change(engine: Engine, models: Models, cache: Path, action: Action, version: str | None,
           request: RoleChangeRequest, actor: str) -> Roles:
    """Apply `action` to `version` (None for a rollback) and store it, audited with `actor` and the reason."""
    if version is not None:
        models.get(version)  # UnknownModel (404) names the loaded versions
    with engine.begin() as connection:
        current = stored_roles.current(connection) or models.roles
        if action == "shadow" and version is not None:
            changed = roles.shadow(current, version, 1.0 if request.share is None else request.share)
        elif action == "canary" and version is not None:
            if request.share is None:
                raise errors.InvalidShare(errors.SHARE_REQUIRED)
            changed = roles.canary(current, version, request.share)
        elif action == "promote" and version is not None:
            changed = roles.promote(current, version, tried=stored_roles.tried(connection), force=request.force)
        elif action == "idle" and version is not None:
            changed = roles.idle(current, version)
        elif action == "rollback":
            changed = roles.rollback(current)
        else:
            raise ValueError(f"unknown role change {action}")
        stored = stored_roles.record(connection, changed, action=action, version=version, actor=actor,
                                     reason=request.reason)
    models.apply(stored)
    save_cache(cache, stored)
    return stored

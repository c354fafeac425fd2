"""The models' roles in table `model_roles`: the newest row is in force, every row is the audit log.

Rows are only added. A change claims the next revision; two changes made at once from the same state claim the same
one, and the unique revision refuses the second (RoleConflict: read again and retry), so no change is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, Table, func, insert, select, union
from sqlalchemy.exc import IntegrityError

from api import errors
from db.models import RoleChange
from rollout.roles import Action, Roles

ROLE_CHANGES: Table = RoleChange.__table__  # type: ignore[assignment]


def current(connection: Connection) -> Roles | None:
    """The roles in force; None while nobody has changed them."""
    row = connection.execute(select(ROLE_CHANGES).order_by(ROLE_CHANGES.c.revision.desc()).limit(1)).first()
    if row is None:
        return None
    return Roles(champion=row.champion, previous_champion=row.previous_champion, shadow=row.shadow,
                 shadow_share=row.shadow_share or 0.0, canary=row.canary, canary_share=row.canary_share or 0.0,
                 revision=row.revision)


def history(connection: Connection, limit: int) -> Sequence[Row[Any]]:
    """The newest `limit` changes (rows of model_roles), newest first."""
    return connection.execute(select(ROLE_CHANGES).order_by(ROLE_CHANGES.c.revision.desc()).limit(limit)).all()


def tried(connection: Connection) -> set[str]:
    """Every version that was ever shadow or canary."""
    query = union(select(ROLE_CHANGES.c.shadow.label("version")), select(ROLE_CHANGES.c.canary))
    return {version for version in connection.scalars(query) if version is not None}


def guard_rollbacks(connection: Connection) -> int:
    """How many canaries the guard has rolled back, ever (a counter kept by the audit log)."""
    return int(connection.scalar(select(func.count()).where(ROLE_CHANGES.c.action == "guard")) or 0)


def record(connection: Connection, roles: Roles, *, action: Action, version: str | None, actor: str,
           reason: str) -> Roles:
    """Store `roles` as the next revision after `roles.revision`; RoleConflict when another change took it."""
    stored = Roles(**{**roles.__dict__, "revision": roles.revision + 1})
    try:
        connection.execute(insert(ROLE_CHANGES).values(
            revision=stored.revision, action=action, version=version, champion=stored.champion,
            previous_champion=stored.previous_champion, shadow=stored.shadow,
            shadow_share=stored.shadow_share if stored.shadow else None, canary=stored.canary,
            canary_share=stored.canary_share if stored.canary else None, actor=actor[:64], reason=reason[:500]))
    except IntegrityError:  # the transaction is the caller's: it rolls back as this propagates
        raise errors.RoleConflict(errors.ROLES_CHANGED_MEANWHILE.format(revision=stored.revision)) from None
    return stored

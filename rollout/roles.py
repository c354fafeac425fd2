"""The models' roles and how they may change: plain values and pure functions, stored by rollout/stored_roles.py.

One model is the champion (it answers); at most one shadow (scores a share of the requests in the background, its
answers recorded, never returned) and at most one canary (answers a share of the requests, by a stable hash of the
client's key); every other loaded model is idle, kept for a rollback. Each change returns new Roles, or raises an
ApiError that says what to do instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import Literal

from api import errors

Role = Literal["champion", "shadow", "canary", "idle"]
Action = Literal["start", "shadow", "canary", "promote", "rollback", "idle", "guard"]
MAX_CANARY_SHARE = 0.5  # a canary answers at most half of the requests: beyond it, promote


@dataclass(frozen=True)
class Roles:
    """Who answers, who shadows, who is a canary, and the champion a rollback returns to."""

    champion: str  # versions of drybean_svc
    previous_champion: str | None = None
    shadow: str | None = None
    shadow_share: float = 0.0
    canary: str | None = None
    canary_share: float = 0.0
    revision: int = 0  # 0: never stored; the first change stores revision 1

    def role(self, version: str) -> Role:
        """The role of a loaded model."""
        if version == self.champion:
            return "champion"
        if version == self.shadow:
            return "shadow"
        return "canary" if version == self.canary else "idle"

    def share(self, version: str) -> float | None:
        """The share of requests the model scores in shadow or answers as canary; None for the others."""
        if version == self.shadow:
            return self.shadow_share
        return self.canary_share if version == self.canary else None

    def versions(self) -> set[str]:
        """Every model these roles name."""
        return {v for v in (self.champion, self.previous_champion, self.shadow, self.canary) if v is not None}


def check_share(share: float, high: float) -> float:
    """`share` when it lies in (0, high]; InvalidShare otherwise."""
    if not 0 < share <= high:
        raise errors.InvalidShare(errors.SHARE_OUT_OF_RANGE.format(share=errors.shown(share), low=0, high=high))
    return share


def _challenger(roles: Roles, version: str) -> Roles:
    """The roles without `version` as shadow or canary (the champion cannot be challenged)."""
    if version == roles.champion:
        raise errors.RoleConflict(errors.ALREADY_CHAMPION.format(version=version))
    if version == roles.shadow:
        roles = replace(roles, shadow=None, shadow_share=0.0)
    if version == roles.canary:
        roles = replace(roles, canary=None, canary_share=0.0)
    return roles


def shadow(roles: Roles, version: str, share: float = 1.0) -> Roles:
    """`version` scores `share` of the requests in the background (replacing any other shadow)."""
    return replace(_challenger(roles, version), shadow=version, shadow_share=check_share(share, 1.0))


def canary(roles: Roles, version: str, share: float) -> Roles:
    """`version` answers `share` of the requests (replacing any other canary)."""
    return replace(_challenger(roles, version), canary=version, canary_share=check_share(share, MAX_CANARY_SHARE))


def idle(roles: Roles, version: str) -> Roles:
    """`version` stops shadowing or answering as canary."""
    return _challenger(roles, version)


def promote(roles: Roles, version: str, *, tried: Collection[str], force: bool = False) -> Roles:
    """`version` answers every request; the champion it replaces is the one a rollback returns to. A model not in
    `tried` (never shadowed or canaried) needs `force`."""
    challenger = _challenger(roles, version)
    if version not in tried and not force:
        raise errors.RoleConflict(errors.PROMOTE_UNTRIED.format(version=version))
    return replace(challenger, champion=version, previous_champion=roles.champion)


def rollback(roles: Roles) -> Roles:
    """The previous champion answers again (the one it replaces becomes the previous: a second rollback undoes the
    first)."""
    if roles.previous_champion is None:
        raise errors.RoleConflict(errors.NOTHING_TO_ROLL_BACK)
    back = _challenger(roles, roles.previous_champion) if roles.previous_champion != roles.champion else roles
    return replace(back, champion=roles.previous_champion, previous_champion=roles.champion)


def in_bucket(key: str, share: float, salt: str) -> bool:
    """Whether `key` falls in the first `share` of the hash space: the same key always lands in the same place, so
    a client keeps its model for as long as the share stands."""
    if share >= 1:  # every key (a shadow for every request): no hash to compute
        return True
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=salt.encode()[:16]).digest()
    return int.from_bytes(digest) < share * 2**64


def tried_versions(history: Iterable[Roles]) -> set[str]:
    """Every model that was ever shadow or canary in `history`."""
    return {v for roles in history for v in (roles.shadow, roles.canary) if v is not None}

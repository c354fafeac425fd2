"""Keep every worker on the roles in the database, and let the guard roll a bad canary back.

Each worker reads the newest roles every `roles_poll_seconds` (a change made through any worker of any pod reaches
them all within that), keeps a copy on local disk for a start while the database is down, and keeps the last roles
it read for as long as the database is down. With a canary in force, it judges the canary on its own requests
(errors, p99 scoring time) and on the labelled beans both models scored; a canary found worse is set back to idle,
in the audit log as the guard's act, with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from api.errors import RoleConflict
from rollout import evidence, guard, stored_roles
from rollout.registry import Models
from rollout.roles import Roles, idle

logger = logging.getLogger("drybeans")
ACCURACY_EVERY = 5  # polls between two accuracy checks of a canary (each reads the paired, labelled beans)
GUARD_WINDOW = 100_000  # the newest paired beans the accuracy check reads


class RoleSync:
    """A worker's thread that follows the roles in the database."""

    def __init__(self, engine: Engine, models: Models, cache: Path, *, interval: float, min_count: int,
                 min_requests: int, latency_ratio: float, latency_margin: float) -> None:
        self._engine, self._models, self._cache = engine, models, cache
        self._interval, self._min_count = interval, min_count
        self._min_requests, self._latency_ratio, self._latency_margin = min_requests, latency_ratio, latency_margin
        self._stop = threading.Event()
        self._polls = 0
        self.guard_rollbacks: int | None = None  # read from the audit log at every poll; None until the first
        self._thread = threading.Thread(target=self._run, name="drybeans-roles", daemon=True)

    def start(self) -> None:
        """Follow the roles until `stop`."""
        self._thread.start()

    def stop(self) -> None:
        """Stop following (at shutdown)."""
        self._stop.set()

    def exposition(self) -> str:
        """The roles in force in this worker, and the guard's rollbacks so far, in Prometheus' text format."""
        models = self._models
        roles = models.roles
        lines = ["# HELP drybeans_model_role A loaded model's role in this worker (1), by version and role.",
                 "# TYPE drybeans_model_role gauge"]
        lines += [f'drybeans_model_role{{version="{version}",role="{roles.role(version)}"}} 1'
                  for version in models.versions]
        if self.guard_rollbacks is not None:
            lines += ["# HELP drybeans_guard_rollbacks Canaries the guard has rolled back, ever (from the audit log).",
                      "# TYPE drybeans_guard_rollbacks gauge", f"drybeans_guard_rollbacks {self.guard_rollbacks}"]
        return "\n".join(lines) + "\n"

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except SQLAlchemyError as error:  # the database is down: the last roles stay in force
                logger.info("roles not refreshed, the database is unavailable: %s", type(error).__name__)
            except Exception:  # never let the thread die: the next poll tries again
                logger.exception("roles not refreshed")

    def poll(self) -> None:
        """Read the roles; judge the canary, if any."""
        with self._engine.connect() as connection:
            roles = stored_roles.current(connection)
            self.guard_rollbacks = stored_roles.guard_rollbacks(connection)
        if roles is not None and roles.revision != self._models.roles.revision:
            self._models.apply(roles)
            save_cache(self._cache, roles)
        self._polls += 1
        if self._models.roles.canary is not None:
            self.judge_canary(accuracy=self._polls % ACCURACY_EVERY == 0)

    def judge_canary(self, *, accuracy: bool) -> None:
        """Roll the canary back (to idle) when the guard finds it worse than the champion."""
        models = self._models
        roles = models.roles
        if roles.canary is None:
            return
        canary, champion = models.get(roles.canary), models.champion
        comparison = None
        if accuracy:
            with self._engine.connect() as connection:
                comparison = evidence.compare_models(connection, champion.tag, canary.tag, since=None,
                                                     limit=GUARD_WINDOW, min_count=self._min_count)
        reason = guard.judge_canary(models.stats.snapshot(canary.tag), models.stats.snapshot(champion.tag),
                                    comparison, min_requests=self._min_requests, latency_ratio=self._latency_ratio,
                                    latency_margin=self._latency_margin)
        if reason is None:
            return
        logger.warning("the guard rolls canary %s back: %s", canary.tag, reason)
        try:
            with self._engine.begin() as connection:
                rolled_back = stored_roles.record(connection, idle(roles, roles.canary), action="guard",
                                                  version=roles.canary, actor="guard", reason=reason)
        except Exception as error:  # another worker was first, or the database is down: read again next poll
            logger.info("guard rollback not recorded here: %s", error)
            return
        models.apply(rolled_back)
        save_cache(self._cache, rolled_back)


def save_cache(path: Path, roles: Roles) -> None:
    """Keep the roles on local disk (atomically), for a start while the database is down."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(roles.__dict__))
        os.replace(temporary, path)
    except OSError as error:
        logger.warning("roles not cached in %s: %s", path, error)


def initial_roles(engine: Engine, cache: Path, default: Roles) -> Roles:
    """The roles to start with: the database's; when it has none yet (the first start on it), `default`, stored as
    revision 1, so that a later image carrying a newer model starts with this champion still answering; when the
    database is down, the last roles this pod saw, else `default`."""
    try:
        with engine.begin() as connection:
            roles = stored_roles.current(connection)
            if roles is None:
                roles = stored_roles.record(connection, default, action="start", version=default.champion,
                                            actor="service", reason="first start on this database: the newest "
                                                                    "loaded model answers")
    except RoleConflict:  # another worker stored the first roles meanwhile
        return initial_roles(engine, cache, default)
    except SQLAlchemyError as error:
        logger.warning("roles not read at start, the database is unavailable (%s): using the last ones seen here",
                       type(error).__name__)
        try:
            return Roles(**json.loads(cache.read_text()))
        except (OSError, ValueError, TypeError):
            return default
    save_cache(cache, roles)
    return roles

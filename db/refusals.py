"""An outage or a refusal: whether a failed write says the database is away, or that it will never take the data.

An outage (connection refused or lost, a timeout, a lock wait, a server shutting down or read-only, a schema not
migrated yet) passes: the records wait in the spool and are written later. A refusal is the server answering and
rejecting the rows themselves (a trigger's SIGNAL, a CHECK constraint, a value the column cannot hold, a grant
revoked on a table): trying again changes nothing, so the refused records are found by halving the batch and set
aside as dead letters (db/deadletter.py), while the rest is committed at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError

G = TypeVar("G")
R = TypeVar("R")
DUPLICATE_KEY = 1062
# MySQL and MariaDB server errors that say nothing about the rows: the server is overloaded, going away, read-only,
# out of space, slow or locked, or the account or schema is not (yet) as the service expects. Client errors (2000
# and up: connection refused, lost, timed out) are outages too. Any other error the server answers refuses the data.
TRANSIENT_MYSQL_ERRORS = frozenset({
    1021, 1030, 1037, 1038, 1040, 1041, 1042, 1043, 1044, 1045, 1046, 1049, 1053, 1054, 1077, 1078, 1079, 1080,
    1081, 1105, 1114, 1129, 1130, 1135, 1146, 1152, 1154, 1155, 1156, 1157, 1158, 1159, 1160, 1161, 1180, 1181,
    1184, 1203, 1205, 1213, 1226, 1290, 1317, 1615, 1836, 1927, 1969, 3024, 4031,
})


@dataclass(frozen=True)
class Refused:
    """A group of records the database refused on its own, and its reason."""

    reason: str


def mysql_error_code(error: SQLAlchemyError) -> int | None:
    """The server's (or PyMySQL's) error number, when `error` carries one."""
    orig = getattr(error, "orig", None)
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_refusal(error: SQLAlchemyError) -> bool:
    """Whether the database answered and refused the data itself (not worth retrying), rather than failed."""
    if not isinstance(error, DBAPIError) or error.connection_invalidated:
        return False
    code = mysql_error_code(error)
    if code is not None and type(error.orig).__module__.startswith("pymysql"):
        return code >= 1000 and not 2000 <= code < 3000 and code not in TRANSIENT_MYSQL_ERRORS
    return isinstance(error, IntegrityError | DataError)


def is_duplicate(error: SQLAlchemyError) -> bool:
    """Whether `error` is a unique key violation (MySQL family, SQLite, PostgreSQL)."""
    if not isinstance(error, IntegrityError):
        return False
    if mysql_error_code(error) == DUPLICATE_KEY:
        return True
    text = str(error.orig)
    return "UNIQUE constraint failed" in text or getattr(error.orig, "pgcode", None) == "23505"


def reason(error: BaseException) -> str:
    """A refusal in one line, as the server worded it."""
    orig = getattr(error, "orig", None) or error
    code = mysql_error_code(error) if isinstance(error, SQLAlchemyError) else None
    message = orig.args[1] if code is not None and len(orig.args) > 1 else str(orig)
    return " ".join(f"{f'({code}) ' if code else ''}{message}".split())[:300]


def commit_isolating(groups: Sequence[G], commit: Callable[[Sequence[G]], Sequence[R]],
                     refusal: SQLAlchemyError | None = None) -> list[R | Refused]:
    """Commit what the database takes of `groups`, halving around refusals until each group it refuses stands
    alone: each group's result, or Refused with the server's reason. `refusal`: `commit(groups)` was refused so
    already. About 2·log2(n) transactions per refused group. An outage met meanwhile is raised (what was committed
    stays: replays skip duplicates)."""
    if refusal is None:
        try:
            return list(commit(groups))
        except SQLAlchemyError as error:
            if not is_refusal(error):
                raise
            refusal = error
    if len(groups) == 1:
        return [Refused(reason(refusal))]
    half = len(groups) // 2
    return commit_isolating(groups[:half], commit) + commit_isolating(groups[half:], commit)

"""Named, scoped tokens, stored hashed in a file (DRYBEANS_TOKENS_FILE) that is re-read when it changes.

The file is UTF-8 text, one token per line as a JSON object; blank lines and lines starting with # are ignored:

    {"name": "dashboard", "scopes": ["read"], "sha256": "<64 hex digits>"}

`sha256` is the SHA-256 of the token's UTF-8 bytes, in lowercase hex; the token itself is never stored. Names are
unique; `api-token` is reserved for DRYBEANS_API_TOKEN, which has every scope. `python -m serving.tokens` writes
the file. A service checks the file's identity, modification time and size at most once a second, so tokens are
added and revoked without a restart (a Kubernetes Secret mounted as a file is updated in place); a file that
cannot be read then keeps the tokens read before, with one warning per change.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api import errors

Scope = Literal["predict", "read", "operate"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
API_TOKEN_NAME = "api-token"  # noqa: S105  # a name, not a secret
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
CHECK_INTERVAL_SECONDS = 1.0

Signature = tuple[int, int, int] | None  # the file's inode, mtime (ns) and size; None while it cannot be found


class TokenEntry(BaseModel):
    """One line of the tokens file: a token's name, what it may do, and its hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="who holds the token; the audit log names it")
    scopes: frozenset[Scope] = Field(min_length=1, description="predict, read and/or operate")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the token's UTF-8 bytes, hex")


class TokenFileError(ValueError):
    """The tokens file cannot be read or holds a line that is not a token; the message names the file and line."""


def digest(token: str | bytes) -> str:
    """The stored form of a token: the hex SHA-256 of its bytes.

    A plain hash suffices: the tokens are 256-bit random secrets (secrets.token_urlsafe(32)), which nobody can
    guess or recover from their hash, so a slow KDF (bcrypt, scrypt, argon2, made for guessable passwords) would
    only add its cost to every request.
    """
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).hexdigest()


def parse_tokens(text: str, path: Path) -> tuple[TokenEntry, ...]:
    """The tokens in the text of the file at `path` (named in errors only)."""
    entries: list[TokenEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entry = TokenEntry.model_validate_json(line)
        except ValidationError as error:
            reason = _reason(error)
            raise TokenFileError(errors.TOKENS_LINE_INVALID.format(path=path, line=number, reason=reason)) from None
        if entry.name == API_TOKEN_NAME or entry.name in {known.name for known in entries}:
            raise TokenFileError(errors.TOKENS_NAME_TAKEN.format(path=path, line=number, name=entry.name))
        entries.append(entry)
    return tuple(entries)


def read_tokens(path: Path) -> tuple[TokenEntry, ...]:
    """The tokens in the file at `path`."""
    return parse_tokens(file_text(path), path)


def file_text(path: Path) -> str:
    """The text of the tokens file; TokenFileError if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise TokenFileError(errors.TOKENS_FILE_UNREADABLE.format(path=path, reason=reason)) from None


def signature(path: Path) -> Signature:
    """What changes when the file is rewritten, replaced or appended to: its inode, mtime and size."""
    try:
        stat = os.stat(path)  # follows the symbolic links through which Kubernetes swaps a Secret's files
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class Tokens:
    """Every token a service accepts: DRYBEANS_API_TOKEN, as `api-token` with every scope, and the file's."""

    def __init__(self, api_token: str | None, path: Path | None, *,
                 check_interval: float = CHECK_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        """Read the file now: raises TokenFileError if it is unusable, so that the service does not start."""
        self._fixed = (TokenEntry(name=API_TOKEN_NAME, scopes=frozenset(SCOPES), sha256=digest(api_token)),
                       ) if api_token else ()
        self._path = path
        self._check_interval = check_interval
        self._clock = clock
        self._signature = signature(path) if path else None  # before reading: a change meanwhile is read next
        self._entries = self._fixed + (read_tokens(path) if path else ())
        self._next_check = clock() + check_interval

    def holder(self, token: bytes) -> TokenEntry | None:
        """The entry of the token presented, or None if the service does not know it."""
        self._refresh()
        presented = digest(token).encode()
        found = None
        for entry in self._entries:  # every entry, each compared in constant time: the time says nothing
            if hmac.compare_digest(presented, entry.sha256.encode()) and found is None:
                found = entry
        return found

    def _refresh(self) -> None:
        """Re-read the file if it changed since it was last read; checked at most once per interval."""
        now = self._clock()
        if self._path is None or now < self._next_check:
            return
        self._next_check = now + self._check_interval
        current = signature(self._path)
        if current == self._signature:
            return
        self._signature = current
        try:
            self._entries = self._fixed + read_tokens(self._path)
        except TokenFileError as error:
            errors.logger.warning(errors.TOKENS_FILE_KEPT.format(problem=error, count=len(self._entries)))
        else:
            errors.logger.info("tokens file %s re-read: %d tokens in force", self._path, len(self._entries))


def _reason(error: ValidationError) -> str:
    """What is wrong with a line, without its values (someone may have pasted a token instead of its hash)."""
    return "; ".join(f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" if problem["loc"]
                     else problem["msg"] for problem in error.errors(include_input=False, include_url=False))

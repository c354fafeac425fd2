"""Manage the tokens file (DRYBEANS_TOKENS_FILE, or --file): add, revoke and list named, scoped tokens.

    python -m serving.tokens add dashboard --scopes read          # prints the new token, once, on stdout
    python -m serving.tokens add release-bot --scopes read,operate
    python -m serving.tokens revoke dashboard
    python -m serving.tokens list                                 # names and scopes, never hashes

The file stores each token's SHA-256 only (format: serving/token_file.py); a running service picks changes up within
a second or two. `add` appends one line; `revoke` rewrites the file atomically (a temporary file, then os.replace).

Exit codes: 0 done; 1 the file cannot be read or written, or holds a line that is not a token; 2 bad usage (an
unknown command, a bad name or scope, no file named); 3 refused: `add` of a name that exists, `revoke` of one that
does not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from api import errors
from config import get_settings
from serving import token_file
from serving.token_file import Scope, TokenFileError

FILE_UNUSABLE, REFUSED = 1, 3  # 2: bad usage, as argparse exits
TOKEN_BYTES = 32  # 256 random bits: see token_file.digest for why a plain hash then suffices


class Refused(Exception):
    """The command cannot be carried out as asked (exit code 3)."""


def checked_name(text: str) -> str:
    """A name as given on the command line, checked."""
    if text == token_file.API_TOKEN_NAME:
        raise argparse.ArgumentTypeError(errors.NAME_RESERVED)
    if not re.fullmatch(token_file.NAME_PATTERN, text):
        raise argparse.ArgumentTypeError(errors.TOKENS_NAME_INVALID.format(name=errors.shown(text)))
    return text


def scope_list(text: str) -> tuple[Scope, ...]:
    """Comma-separated scopes, in the canonical order."""
    given = {part.strip() for part in text.split(",") if part.strip()}
    unknown = given - set(token_file.SCOPES)
    if unknown or not given:
        raise argparse.ArgumentTypeError(errors.SCOPES_INVALID.format(unknown=", ".join(sorted(unknown)) or "none"))
    return tuple(scope for scope in token_file.SCOPES if scope in given)


def add(path: Path, name: str, scopes: tuple[Scope, ...]) -> str:
    """Append a new token named `name` to the file (created if missing); returns the token."""
    text = token_file.file_text(path) if path.exists() else ""
    if name in {entry.name for entry in token_file.parse_tokens(text, path)}:
        raise Refused(errors.TOKENS_NAME_EXISTS.format(name=name, path=path))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    line = json.dumps({"name": name, "scopes": list(scopes), "sha256": token_file.digest(token)}) + "\n"
    if text and not text.endswith("\n"):
        line = "\n" + line
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # hashes only, still nobody's business
    with os.fdopen(descriptor, "a", encoding="utf-8") as file:
        file.write(line)  # one write of one short line: a service reading meanwhile sees all of it or none
    return token


def revoke(path: Path, name: str) -> None:
    """Remove the token named `name`: the file is rewritten to a temporary file, which then replaces it."""
    text = token_file.file_text(path)
    entries = token_file.parse_tokens(text, path)
    if name not in {entry.name for entry in entries}:
        known = ", ".join(entry.name for entry in entries) or "no tokens"
        raise Refused(errors.TOKENS_NAME_UNKNOWN.format(name=name, path=path, known=known))
    kept = [line for line in text.splitlines(keepends=True) if not _names(line, name)]
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as temporary:
        try:
            temporary.writelines(kept)
            temporary.flush()
            os.fsync(temporary.fileno())
            os.chmod(temporary.name, path.stat().st_mode & 0o777)
            os.replace(temporary.name, path)
        except BaseException:
            os.unlink(temporary.name)
            raise


def listing(path: Path) -> list[token_file.TokenEntry]:
    """The tokens in the file, in its order."""
    return list(token_file.read_tokens(path)) if path.exists() else []


def _names(line: str, name: str) -> bool:
    """Whether a line of a valid tokens file is the token named `name` (comments and blank lines are not)."""
    if not line.strip() or line.lstrip().startswith("#"):
        return False
    return token_file.TokenEntry.model_validate_json(line).name == name


def parser() -> argparse.ArgumentParser:
    """The command line."""
    command_line = argparse.ArgumentParser(prog="python -m serving.tokens", description=__doc__.splitlines()[0])
    command_line.add_argument("--file", type=Path, help="the tokens file (default: DRYBEANS_TOKENS_FILE)")
    commands = command_line.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add", help="create a token, print it once, store its hash")
    adding.add_argument("name", type=checked_name, help="who holds it; the audit log names it")
    adding.add_argument("--scopes", type=scope_list, required=True, help="comma-separated: predict, read, operate")
    commands.add_parser("revoke", help="remove a token").add_argument("name", help="the token's name")
    commands.add_parser("list", help="names and scopes")
    return command_line


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    command_line = parser()
    arguments = command_line.parse_args(argv)
    path = arguments.file
    if path is None:
        path = get_settings().tokens_file
    if path is None:
        command_line.error(errors.TOKENS_FILE_NOT_SET)
    try:
        if arguments.command == "add":
            print(add(path, arguments.name, arguments.scopes))
            print(f"token {arguments.name} ({','.join(arguments.scopes)}) added to {path}; it is shown only now",
                  file=sys.stderr)
        elif arguments.command == "revoke":
            revoke(path, arguments.name)
            print(f"token {arguments.name} revoked in {path}", file=sys.stderr)
        else:
            for entry in listing(path):
                print(f"{entry.name}\t{','.join(scope for scope in token_file.SCOPES if scope in entry.scopes)}")
    except (TokenFileError, OSError) as error:
        print(error, file=sys.stderr)
        return FILE_UNUSABLE
    except Refused as error:
        print(error, file=sys.stderr)
        return REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""X-Client-Key: a stable key a client sends (a client, a lab, a session) so that its requests keep one model
while a canary answers a share of the keys (rollout/roles.py `in_bucket`)."""

from __future__ import annotations

from collections.abc import Iterable

CLIENT_KEY_HEADER = "x-client-key"  # a stable key (a client, a lab, a session): its requests keep one model
MAX_CLIENT_KEY = 256


def client_key(value: str | bytes | None) -> str | None:
    """The X-Client-Key header's value as a canary key (its first 256 characters); None when absent or empty."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value[:MAX_CLIENT_KEY] or None if value else None


def client_key_in(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The X-Client-Key of an ASGI scope's headers."""
    wanted = CLIENT_KEY_HEADER.encode()
    return client_key(next((value for name, value in headers if name == wanted), None))

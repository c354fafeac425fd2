"""Bearer-token access control: recorded data, metrics and the models' roles are not for anyone on the internet.

Tokens have names and scopes (serving/token_file.py): `read` reads recorded data, monitoring, /metrics and the
operator API's GETs; `operate` changes the models' roles (POSTs under /v1/models/); `predict` classifies when
`protect_predict` closes predictions, and reports ground truth (POST /v1/feedback), which always needs a token:
the clients that classify beans are the ones that learn their true varieties. DRYBEANS_API_TOKEN has every scope.
`require_token` (set where the service faces a network) stops it from starting without tokens. Tokens are compared
in constant time and never logged or echoed; the route learns the token's name (`token_name`) for its audit log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from api import errors
from config import Settings, get_settings
from serving.responses import send_error
from serving.token_file import Scope, TokenEntry, TokenFileError, Tokens

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

# Paths whose answers are recorded data or operational detail: they always need a token when tokens are set.
RECORD_PATHS = ("/v1/predictions", "/v1/quality", "/v1/drift", "/metrics")
FEEDBACK_PATH = "/v1/feedback"
OPERATOR_PATHS = "/v1/models"  # the operator API; /v1/model, the console's model card, stays open
PREDICTION_PATHS = ("/predict", "/v1/classify")
READ_METHODS = ("GET", "HEAD")
ANONYMOUS = "anonymous"


class TokenRequired(SystemExit):
    """A token is required (DRYBEANS_REQUIRE_TOKEN) and none is set: the service exits, printing what to set."""


class TokensUnusable(SystemExit):
    """The tokens file cannot be read at start: the service exits, naming the file and the line."""


def bearer_token(app: ASGIApp) -> BearerToken:
    """The token check, its tokens from the settings."""
    return BearerToken(app, **bearer_settings(get_settings()))


def bearer_settings(settings: Settings) -> dict[str, Any]:
    """BearerToken's arguments from the settings: the tokens (None: access is open), and whether predictions need
    one too. Exits if tokens are required and none is set, or if the tokens file is unusable."""
    if settings.require_token and settings.api_token is None and settings.tokens_file is None:
        raise TokenRequired(errors.ACCESS_NOT_CONFIGURED)
    tokens = None
    if settings.api_token is not None or settings.tokens_file is not None:
        try:
            tokens = Tokens(settings.api_token.get_secret_value() if settings.api_token else None,
                            settings.tokens_file)
        except TokenFileError as error:
            raise TokensUnusable(str(error)) from None
    return {"tokens": tokens, "protect_predict": settings.protect_predict}


def required_scope(method: str, path: str, *, protect_predict: bool) -> Scope | None:
    """The scope a request needs, or None if it is open to anyone (when tokens are set at all)."""
    if path.startswith(OPERATOR_PATHS):
        return "read" if method in READ_METHODS else "operate"
    if path.startswith(FEEDBACK_PATH):
        return "predict"
    if path.startswith(RECORD_PATHS):
        return "read"
    if protect_predict and (path in PREDICTION_PATHS or (path.startswith("/v2/models/") and path.endswith("/infer"))):
        return "predict"
    return None


def authorize(tokens: Tokens, authorization: bytes, needed: Scope, *,
              missing: str = errors.AUTHORIZATION_MISSING) -> TokenEntry:
    """The holder of the bearer token in an Authorization value, if it has the scope `needed`.

    Raises Unauthenticated (no bearer token: `missing` says how to send one) or Forbidden (a token the service
    does not know, or one without the scope).
    """
    scheme, _, credentials = authorization.partition(b" ")
    if scheme.lower() != b"bearer" or not credentials.strip():
        raise errors.Unauthenticated(missing)
    holder = tokens.holder(credentials.strip())
    if holder is None:
        raise errors.Forbidden(errors.AUTHORIZATION_REFUSED)
    if needed not in holder.scopes:
        raise errors.Forbidden(errors.SCOPE_NOT_GRANTED.format(scope=needed, name=holder.name))
    return holder


def token_name(request: HTTPConnection) -> str:
    """The name of the token that let this request through, or "anonymous" where no token was asked for."""
    return str(getattr(request.state, "token_name", ANONYMOUS))


class BearerToken:
    """Answer 401 (no token) or 403 (unknown token, or one without the scope needed) on protected paths; let
    everything else through. A request let through carries its token's name in scope["state"]["token_name"]."""

    def __init__(self, app: ASGIApp, tokens: Tokens | None, protect_predict: bool = False) -> None:
        self.app = app
        self._tokens = tokens
        self._protect_predict = protect_predict

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        needed = (required_scope(scope["method"], scope["path"], protect_predict=self._protect_predict)
                  if self._tokens is not None and scope["type"] == "http" else None)
        if self._tokens is None or needed is None:
            await self.app(scope, receive, send)
            return
        try:
            holder = authorize(self._tokens, dict(scope["headers"]).get(b"authorization", b""), needed)
        except errors.Unauthenticated as error:
            await send_error(send, error, scope["path"], [(b"www-authenticate", b'Bearer realm="drybeans"')])
        except errors.Forbidden as error:
            await send_error(send, error, scope["path"])
        else:
            scope.setdefault("state", {})["token_name"] = holder.name  # Starlette's request.state reads it
            await self.app(scope, receive, send)

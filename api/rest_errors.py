"""How an error reaches a REST client: one JSON object, `{"error": message, "code": ..., "detail"?: ...}`, with
the error's status, rendered by `render` whichever layer refuses (a middleware, a shortcut, a BentoML API or a
FastAPI route), and logged in one line. Errors of BentoML, Starlette and FastAPI are reshaped into the same object
(`reshape`, applied by the body guard to every 4xx answer)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from api import errors
from api.errors import ApiError

JSON = "application/json"
CODES = {400: "invalid_input", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
         415: "unsupported_media_type", 422: "invalid_input"}  # for 4xx answers that come without a code
MAX_DETAIL = 20  # validation problems listed in an error answer; the message counts the rest
MAX_MESSAGE = 500  # characters of a foreign error message kept
DATABASE_RETRY_SECONDS = "5"


def error_body(message: str, code: str, detail: Any = None) -> dict[str, Any]:
    """The one shape of every error answer."""
    body: dict[str, Any] = {"error": message, "code": code}
    if detail is not None:
        body["detail"] = detail
    return body


def encode(body: dict[str, Any]) -> bytes:
    """An error object as the answer's bytes (compact, UTF-8: as Starlette's JSONResponse writes JSON)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def render(error: ApiError, where: str) -> bytes:
    """The answer's body for `error`, logged in one line as answered by `where` (a path or an API's name)."""
    errors.log_answer(where, error)
    return encode(error_body(error.message, error.code))


def error_response(error: ApiError, where: str) -> Response:
    """`error` as a Starlette response."""
    return Response(render(error, where), status_code=error.status, media_type=JSON)


async def api_error_handler(request: Request, error: Exception) -> Response:
    """The web app's handler for an ApiError raised by any of its routes."""
    return error_response(error if isinstance(error, ApiError) else ApiError(str(error)), request.url.path)


async def database_error_handler(request: Request, error: Exception) -> Response:
    """A read the database did not answer (down, too slow, or every pooled connection busy): 503, no traceback."""
    response = error_response(errors.StoreUnavailable(errors.DATABASE_UNAVAILABLE),
                              f"{request.url.path} ({type(error).__name__})")
    response.headers["Retry-After"] = DATABASE_RETRY_SECONDS
    return response


P = ParamSpec("P")
R = TypeVar("R")


def answers_errors(api: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | Response]]:
    """A BentoML API whose ApiErrors become their JSON answer (BentoML would answer 500)."""

    @functools.wraps(api)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        try:
            return await api(*args, **kwargs)
        except ApiError as error:
            context = kwargs.get("ctx")
            if context is not None:  # BentoML applies the context's status to the answer last
                context.response.status_code = error.status  # type: ignore[attr-defined]
            return error_response(error, api.__name__)

    return wrapper


def reshape(status: int, body: bytes) -> dict[str, Any]:
    """The project's error object for whatever a 4xx body was."""
    code = CODES.get(status, "client_error")
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError):
        return error_body(body[:MAX_MESSAGE].decode(errors="replace").strip() or f"HTTP {status}", code)
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], dict):
        payload = payload[0]  # BentoML's [{"error": ...}]
    if not isinstance(payload, dict):
        return error_body(str(payload)[:MAX_MESSAGE] or f"HTTP {status}", code)
    detail = payload.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict) and "loc" in detail[0]:
        # pydantic's (BentoML's or FastAPI's): client text in it is clipped, as in every message
        return error_body(summarise(detail), code, [_clipped(problem) for problem in detail[:MAX_DETAIL]])
    message, given_code = payload.get("error"), payload.get("code")
    if isinstance(message, str) and message and isinstance(given_code, str):  # ours already
        return error_body(message, given_code, detail)
    return error_body(str(message or detail or payload)[:MAX_MESSAGE], code)


def summarise(problems: Sequence[Mapping[str, Any]]) -> str:
    """One line naming the first few of pydantic's problems: `beans.0.Area: Field required`; field names clipped."""
    parts = []
    for problem in problems[:3]:
        where = ".".join(errors.clipped(str(part)) for part in problem.get("loc", ()) if part != "body")
        message = errors.clipped(str(problem.get("msg") or "invalid value"), MAX_MESSAGE)
        parts.append(f"{where}: {message}" if where else message)
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(parts) + more


def _clipped(problem: Any) -> Any:
    """One of pydantic's problems with the client's text in it clipped: field names, the input, the context."""
    if not isinstance(problem, dict):
        return errors.clipped(str(problem), MAX_MESSAGE)
    kept = dict(problem)
    if isinstance(loc := kept.get("loc"), list):
        kept["loc"] = [part if isinstance(part, int) else errors.clipped(str(part)) for part in loc]
    if "msg" in kept:
        kept["msg"] = errors.clipped(str(kept["msg"]), MAX_MESSAGE)
    if "input" in kept:
        kept["input"] = _clipped_value(kept["input"])
    if isinstance(ctx := kept.get("ctx"), dict):
        kept["ctx"] = {errors.clipped(str(key)): _clipped_value(value) for key, value in ctx.items()}
    return kept


def _clipped_value(value: Any) -> Any:
    """A JSON value as given when short; else its JSON text, clipped."""
    if value is None or isinstance(value, bool | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value)
    return value if len(text) <= errors.MAX_SHOWN else errors.clipped(text)


class ClientErrorsAreNotServerErrors(logging.Filter):
    """BentoML logs a client's invalid input with a traceback at ERROR; make it one line at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and _is_client_error(error):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "%s [%s]: client error: %s"
            where = record.args[:2] if isinstance(record.args, tuple) else ("?", "?")
            record.args = (*where, _one_line(error))
            record.exc_info, record.exc_text = None, None
        return True


def _is_client_error(error: BaseException) -> bool:
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return True
    return isinstance(error, BentoMLException) and int(error.error_code) < 500


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]


def quiet_client_errors() -> None:
    """Install the filter on the logger BentoML reports API exceptions to."""
    logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorsAreNotServerErrors())

"""The errors clients can cause or meet, each with its HTTP status, rendered as one JSON object shape."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, ParamSpec, TypeVar

from starlette.responses import JSONResponse, Response

logger = logging.getLogger("drybeans")

# Messages, shared with the tests.
DATA_NOT_JSON = "data is not valid JSON ({reason}); send a JSON array of rows of 16 numbers"
DATA_NOT_A_LIST = "data must be a list of rows, each a list of 16 numbers"
NO_BEANS = "no beans to classify: send at least one row of 16 numbers"
ROW_NOT_A_LIST = "row {row} is not a list; each row is a list of 16 numbers"
WRONG_FEATURE_COUNT = "row {row} has {count} features; each bean needs 16 ({names})"
NOT_A_NUMBER = "row {row}, feature {feature}: {value} is not a number"
NOT_FINITE = "row {row}, feature {feature}: {value} is not a finite number"
OUT_OF_RANGE = "row {row}, feature {feature}: {value} is out of range; measurements lie within ±{limit:g}"
UNSUPPORTED_MEDIA_TYPE = "send the body as JSON, with Content-Type: application/json"
TOO_MANY_BEANS = "{count} beans in one request; the limit is {limit}: split it into smaller requests"
BODY_TOO_LARGE = "the request body is over {limit} bytes; split it into smaller requests"
TOO_MANY_CONTAINERS = "the request body holds more than {limit} JSON arrays and objects; split it into smaller requests"
TOO_MANY_VALUES = ("the request body holds more than {limit} JSON values (counted by their separating commas); "
                   "split it into smaller requests")
CONTENT_TYPE_REPEATED = "the request has {count} Content-Type headers: send one, Content-Type: application/json"
SINCE_OUT_OF_RANGE = "since must lie between {first} and {last} (UTC)"
DATABASE_UNAVAILABLE = "the database is unavailable; retry later"
STORE_UNAVAILABLE = ("the database is unavailable and the local spool cannot take the predictions ({reason}); "
                     "retry later, or send store: false")
UNKNOWN_VARIETY = "unknown variety {name}; known: {known}"
AUTHORIZATION_MISSING = "this path needs a token: send the header Authorization: Bearer <token>"
AUTHORIZATION_REFUSED = "the token is not valid for this service"
SCOPE_NOT_GRANTED = ("this token may not {scope}: {name} lacks the scope {scope}, which this request needs; ask an "
                     "operator for a token with it (python -m serving.tokens add NAME --scopes {scope})")
ACCESS_NOT_CONFIGURED = ("DRYBEANS_REQUIRE_TOKEN is true but neither DRYBEANS_API_TOKEN nor DRYBEANS_TOKENS_FILE is "
                         "set: set DRYBEANS_API_TOKEN to a long random secret (python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))'), or point DRYBEANS_TOKENS_FILE at a file of named tokens "
                         "(python -m serving.tokens add NAME --scopes read), or set DRYBEANS_REQUIRE_TOKEN=false to "
                         "let anyone who reaches the port read the records")
# The tokens file (serving/token_file.py) and `python -m serving.tokens`
TOKENS_FILE_UNREADABLE = "cannot read the tokens file {path} (DRYBEANS_TOKENS_FILE): {reason}"
TOKENS_LINE_INVALID = ("tokens file {path}, line {line}: {reason}; each line is a JSON object such as "
                      '{{"name": "dashboard", "scopes": ["read"], "sha256": "<64 hex digits>"}}, '
                      "written by python -m serving.tokens add")
TOKENS_NAME_TAKEN = ("tokens file {path}, line {line}: the name {name} is taken (by an earlier line, or api-token by "
                    "DRYBEANS_API_TOKEN); give each token a name of its own")
TOKENS_FILE_KEPT = "{problem}; the {count} tokens read before stay in force until the file is fixed"
TOKENS_NAME_INVALID = ("{name} is not a token name: use 1 to 64 letters, digits, '.', '_', '@' or '-', starting with "
                      "a letter or digit")
NAME_RESERVED = "the name api-token is DRYBEANS_API_TOKEN's: choose another name"
TOKENS_NAME_EXISTS = "a token named {name} exists already in {path}: revoke it first, or choose another name"
TOKENS_NAME_UNKNOWN = "no token named {name} in {path}; it holds: {known}"
SCOPES_INVALID = "unknown scopes {unknown}: choose among predict, read and operate, comma-separated"
TOKENS_FILE_NOT_SET = "name the tokens file: set DRYBEANS_TOKENS_FILE or pass --file"
UNKNOWN_RECORDS = ("no recorded prediction for {records}; name beans by the record_id, or the request_id and "
                   "bean_index, that /v1/classify returned; nothing of this report was stored")
FEEDBACK_CONFLICT = ("{conflicts}: a bean's true variety is reported once and never changed; nothing of this "
                     "report was stored")
TOO_MANY_REPORTS = "{count} feedback items in one request; the limit is {limit}: split it into smaller requests"
SERVICE_STARTING = "the service is starting; retry in a few seconds"
NO_REFERENCE = "model {model} was saved without a training reference: retrain it with this version of train.py"
CANNOT_EXPLAIN = ("model {model} cannot explain its labels: explanations need a linear model (train.py --kernel "
                  "linear); send explain: false for labels, scores and probabilities")
# `train.py --feedback`
FEEDBACK_UNREADABLE = ("cannot read the feedback from {database} ({reason}): start the database, point DATABASE_URL "
                       "or MYSQL_* at it (and run python -m db.migrate), or train without --feedback; nothing saved")
FEEDBACK_NO_SQLITE_FILE = ("cannot read the feedback: no database is configured (MYSQL_* or DATABASE_URL) and the "
                           "embedded database {path} does not exist; train without --feedback; nothing saved")
# `python -m rollout.backtest`
UNKNOWN_CANDIDATE = "no model {tag} in the model store ({home}); it holds: {known}"
UNUSABLE_CANDIDATE = "model {tag} cannot be loaded: {reason}"
BACKTEST_DATABASE_UNAVAILABLE = ("cannot read the stored predictions from {url}: {reason}; check DATABASE_URL or "
                                 "MYSQL_HOST, MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD and MYSQL_DB")
NO_STORED_PREDICTIONS = ("no stored predictions with features{filters} in {url}: record some first, or widen "
                         "--champion and --since")
INCONSISTENT_BEANS = ("features that contradict each other (DRYBEANS_REJECT_INCONSISTENT is on): {beans}; check "
                      "the measurements (docs/api.md: Which answers to doubt); nothing was recorded")
# Models and their roles (rollout/)
UNKNOWN_MODEL = "no model {version} is loaded; loaded: {loaded}"
SHARE_REQUIRED = 'a canary needs its share of the requests: send {"share": 0.1}, at most 0.5'
SHARE_OUT_OF_RANGE = "share {share} is outside ({low}, {high}]: send a share such as 0.1"
ALREADY_CHAMPION = "model {version} is the champion already"
PROMOTE_UNTRIED = ("model {version} was never shadowed or canaried: shadow it first and compare "
                   "(GET /v1/models/compare?challenger={version}), or send force: true")
NOTHING_TO_ROLL_BACK = "there is no previous champion to return to"
ROLES_CHANGED_MEANWHILE = "the roles changed meanwhile (revision {revision}); read GET /v1/models and retry"
NOT_IN_THIS_POD = ("the roles name model {version}, which this pod did not load; it keeps {kept} as champion: "
                   "deploy an image that carries {version}")
# The canary's guard rails (rollout/guard.py): why a canary was rolled back, for the audit log
CANARY_ERRORS = ("the canary failed {errors} of {requests} requests ({rate:.2%}) where the champion failed "
                 "{champion_errors} of {champion_requests} (taken as {expected:.2%}): one-sided exact binomial "
                 "p = {p_value:.2g}")
CANARY_SLOW = ("the canary's p99 scoring time is {canary_ms:.1f} ms, {ratio:.1f} times the champion's "
               "{champion_ms:.1f} ms, over {requests} and {champion_requests} requests (limit: {limit:g} times)")
CANARY_LESS_ACCURATE = ("the canary is less accurate than the champion on {labelled} labelled beans: {accuracy:.4f} "
                        "against {champion_accuracy:.4f} (McNemar: champion alone right {b}, canary alone right {c}, "
                        "p = {p_value:.2g})")


MAX_SHOWN = 40  # characters of a client's value an error message repeats


def shown(value: object) -> str:
    """A client's value as an error message names it: repr, cut to MAX_SHOWN characters (never echoed whole)."""
    return clipped(repr(value))


def clipped(text: str, limit: int = MAX_SHOWN) -> str:
    """Text from a client (JSON, a path, a field name) cut to `limit` characters, as `shown` cuts a value."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ApiError(Exception):
    """An error the service answers with `status` and a JSON object naming the problem."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ApiError):
    """The request is malformed or its values are unusable."""

    status = 400
    code = "invalid_input"


class CannotExplain(ApiError):
    """The request asks for explanations from a model that has none (a non-linear SVC)."""

    status = 422
    code = "cannot_explain"


class Unauthenticated(ApiError):
    """No token where one is needed."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """A token that is not this service's."""

    status = 403
    code = "forbidden"


class InconsistentBeans(ApiError):
    """Beans whose features contradict each other, where the service is set to refuse them."""

    status = 422
    code = "inconsistent_features"


class UnknownModel(ApiError):
    """A model version the service did not load."""

    status = 404
    code = "unknown_model"


class RoleConflict(ApiError):
    """A role change that the current roles do not allow."""

    status = 409
    code = "role_conflict"


class InvalidShare(ApiError):
    """A shadow's or canary's share outside the range it may take."""

    status = 422
    code = "invalid_share"


class TooLarge(ApiError):
    """The request holds more beans or bytes than the service takes at once."""

    status = 413
    code = "too_large"


class PhotoRefused(ApiError):
    """A photo that cannot be measured: not an image, too large, empty, no bean, one region filling the frame."""

    status = 422
    code = "photo_refused"


class StoreUnavailable(ApiError):
    """The database could not record predictions that the client asked to store."""

    status = 503
    code = "store_unavailable"


def error_body(message: str, code: str, detail: Any = None) -> dict[str, Any]:
    """The one shape of every error answer."""
    body: dict[str, Any] = {"error": message, "code": code}
    if detail is not None:
        body["detail"] = detail
    return body


def error_response(error: ApiError) -> JSONResponse:
    """Render an ApiError."""
    return JSONResponse(error_body(error.message, error.code), status_code=error.status)


def log_answer(api_name: str, error: ApiError) -> None:
    """One log line for an error answer: a warning for the service's failures, info for a client's mistakes."""
    log = logger.warning if error.status >= 500 else logger.info
    log("%s answered %d %s: %s", api_name, error.status, error.code, error.message)


P = ParamSpec("P")
R = TypeVar("R")


def answers_errors(api: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | Response]]:
    """Turn an ApiError raised by an API into its JSON answer; a client's mistake is logged in one line."""

    @functools.wraps(api)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        try:
            return await api(*args, **kwargs)
        except ApiError as error:
            log_answer(api.__name__, error)
            context = kwargs.get("ctx")
            if context is not None:  # BentoML applies the context's status to the answer last
                context.response.status_code = error.status  # type: ignore[attr-defined]
            return error_response(error)

    return wrapper


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

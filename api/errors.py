"""Every error a client can cause or meet: its message, and its class with the HTTP status and code it answers with.

One module holds them all, so that a message is written once and a client's documentation can be read off it.
How they reach a client: api/rest_errors.py (one JSON object shape, for every REST layer) and
protocol/grpc_server.py (a gRPC status with the same message).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from data.schema import FEATURES

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
WINDOW_TOO_LARGE = ("window {window} is too large: it must be less than or equal to {limit}, the most records "
                    "/v1/drift compares (DRYBEANS_DRIFT_MAX_WINDOW)")
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
# Photos (POST /v1/photos, python -m photos extract): what to change in the photo or the request
PHOTO_EMPTY = "the photo is empty (0 bytes)"
PHOTO_TOO_LARGE = ("the photo is {megabytes:.1f} MB; at most {limit:.1f} MB are accepted: send a smaller or more "
                   "compressed file")
PHOTO_NOT_AN_IMAGE = "not a PNG or JPEG image: send the photo as a .png or .jpg file"
PHOTO_NO_PIXELS = "the photo is empty (0 pixels: {width} x {height})"
PHOTO_TOO_MANY_PIXELS = ("the photo is {megapixels:.0f} megapixels ({width} x {height}); at most {limit:g} are "
                         "accepted: scale it down")
PHOTO_DECLARES_TOO_MANY_PIXELS = ("the photo declares over {megapixels:.0f} megapixels; at most {limit:g} are "
                                  "accepted: scale it down")
PHOTO_HEADER_DAMAGED = "the photo is not a readable {format} image (its header is damaged): export it again"
PHOTO_DATA_DAMAGED = "the photo's {format} data is damaged or truncated ({reason}): export it again"
PHOTO_BACKGROUND = "background must be one of {known}, not {background}"
PHOTO_TWO_SCALES = "give the photo's pixels per millimetre or a calibration disc's diameter, not both"
PHOTO_SCALE_NOT_POSITIVE = "pixels per millimetre must be a positive number, not {value}"
PHOTO_SCALE_UNKNOWN = ("the photo's scale is unknown: give its pixels per millimetre, or the diameter of a calibration "
                       "disc photographed with the beans")
SCALE_NOT_POSITIVE = "the {name}'s pixels per millimetre must be a positive number, not {value}"
DISC_NOT_POSITIVE = "the calibration disc's diameter must be a positive number of millimetres, not {value}"
NO_DISC_NOTHING_FOUND = "no calibration disc found: nothing was found in the photo"
NO_DISC_ROUND_ENOUGH = ("no calibration disc found: the roundest region has roundness {roundness:.3f}, solidity "
                        "{solidity:.3f} and axis ratio {ratio:.3f} (a disc has about 1 for each): lay a flat disc of "
                        "{diameter:g} mm beside the beans, apart from them, and photograph it from straight above")
PHOTO_ONLY_THE_DISC = "no bean found besides the calibration disc"
PHOTO_NO_BEAN = ("no bean found: nothing stands out of the {background} background by at least {pixels} pixels "
                 "without touching the photo's edge")
PHOTO_UNIFORM = "no bean found: the photo is one uniform grey"
PHOTO_BACKGROUND_ADVICE = ("photograph the beans apart on a plain {background} background that shows all around them, "
                           "or set the background to {other} if it is {other}")
PHOTO_REGION_FILLS = "one region fills {percent:.0f}% of the photo: {advice}"
PHOTO_REGION_ON_EVERY_EDGE = "one region reaches all four edges of the photo: {advice}"
PHOTO_TOO_MANY_BEANS = ("{count} beans found; at most {limit} are measured in one photo: photograph fewer beans at "
                        "a time")
PHOTOS_NOT_A_FOLDER = "{path} is not a folder: give a folder with one sub-folder of photos per variety"
PHOTOS_NONE_FOUND = ("no PNG or JPEG photo in the sub-folders of {path}: put each variety's photos in a sub-folder "
                     "named after it (e.g. seker/1.jpg)")
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

# V2 (protocol/): the input tensors
V2_FEATURES_INPUT = "features"  # the name of the one [n, 16] input tensor (protocol/arrays.py)
INPUT_HELP = (f"send one FP64 (or FP32) tensor of shape [n, {len(FEATURES)}] (any name, e.g. "
              f'"{V2_FEATURES_INPUT}"), or the {len(FEATURES)} features as tensors of shape [n] named '
              f"{', '.join(FEATURES)}")
AMBIGUOUS_INPUTS = "{count} input tensors and none is a feature name, so which one holds the beans? " + INPUT_HELP
UNKNOWN_INPUTS = "unknown input {names}; " + INPUT_HELP
MISSING_INPUTS = "missing input {names}; " + INPUT_HELP
DUPLICATE_INPUT = "input {name} is given more than once"
FEATURES_NOT_ALONE = (f'input "{V2_FEATURES_INPUT}" holds all {len(FEATURES)} features: send it alone, not with '
                      "{names}")
WRONG_DATATYPE = "input {name} has datatype {datatype}; this model takes FP64 or FP32"
WRONG_SHAPE = "input {name} has shape {shape}; it must be {expected}"
DIFFERENT_LENGTHS = "the feature tensors have different lengths: {name} has {count} beans, {first} has {expected}"
V2_NOT_FINITE = "input {name}, element {index}: {value} is not a finite number"
V2_OUT_OF_RANGE = "input {name}, element {index}: {value} is out of range; measurements lie within ±{limit:g}"

# V2: binary tensor data
BAD_HEADER = ("Inference-Header-Content-Length is {given}; it must be the byte length of the JSON that starts the "
              "body, at most the body's {size} bytes")
BAD_SIZE = "input {name}: binary_data_size must be a whole number of bytes, not {given}"
SIZE_AND_DATA = "input {name} has both binary_data_size and data: send its elements one way"
SIZE_MISMATCH = "input {name}: binary_data_size is {size}; shape {shape} of {datatype} needs {expected} bytes"
PAST_THE_BODY = "input {name}: its {size} bytes run past the end of the body ({left} bytes left)"
TRAILING_BYTES = "{count} bytes of binary data follow the last binary input; binary_data_size must account for all"
V2_NOT_BOOLEAN = "parameter {name} must be true or false"

# V2: tensors' data and the outputs asked for
NO_DATA = "input {name} has no data: send its elements in `data`, or its bytes with the parameter binary_data_size"
NOT_BINARY = ("input {name} has binary_data_size but the request has no Inference-Header-Content-Length: send the "
              "header, the JSON's byte length")
DATA_LENGTH = "input {name} has {count} data elements; its shape {shape} needs {expected}"
DATA_NESTING = "input {name}: nested data does not match its shape {shape}; send it flat, or nested as the shape"
V2_NOT_A_NUMBER = "input {name}, element {index}: {value} is not a number"
UNKNOWN_OUTPUT = "unknown output {name}; this model outputs {outputs}"
DUPLICATE_OUTPUT = "output {name} is requested more than once"

# V2 over gRPC
GRPC_AUTHORIZATION_MISSING = "this call needs a token: send the metadata authorization: Bearer <token>"
TOO_MANY_INPUTS = "{count} input tensors; send at most {limit}: one [n, 16] tensor, or the 16 features as [n] tensors"
RAW_AND_TYPED = "send every input's data either in raw_input_contents or in its contents, not both"
RAW_COUNT = "{count} raw_input_contents for {inputs} inputs: send one per input, in the inputs' order"
RAW_SIZE = "input {name}: raw_input_contents holds {size} bytes; shape {shape} of {datatype} needs {expected}"
CONTENTS_SIZE = "input {name}: contents.{field} holds {count} elements; shape {shape} needs {expected}"
GRPC_STORE_NOT_BOOLEAN = 'parameter "store" must be a bool_param'

# V2: the model named in the path, and the store parameter
V2_UNKNOWN_MODEL = "unknown model {name}; this server serves {served!r}"
V2_UNKNOWN_VERSION = "model {name!r} has no version {version}; it has {served}"
V2_BODY_NOT_JSON = "the body is not valid JSON ({reason})"
V2_STORE_NOT_BOOLEAN = 'parameter "store" must be true or false'

# Feedback (POST /v1/feedback)
FEEDBACK_UNAVAILABLE = "the database is unavailable and the local spool cannot take the report ({reason}); retry later"


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
    """A photo that cannot be measured: not an image, too large, empty, no bean, one region filling the frame. Raised
    by photos/ itself, so that `python -m photos extract` says the same as the route."""

    status = 422
    code = "photo_refused"


class StoreUnavailable(ApiError):
    """The database could not record predictions that the client asked to store."""

    status = 503
    code = "store_unavailable"


class NotFound(ApiError):
    """Nothing at this path, or nothing by the name the request gives."""

    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    """The path names a model or version this server does not serve."""


class UnsupportedMediaType(ApiError):
    """A body declared as something other than JSON."""

    status = 415
    code = "unsupported_media_type"


class UnknownRecords(NotFound):
    """Feedback names predictions that are not recorded."""


class FeedbackConflict(ApiError):
    """Feedback contradicts a true variety already reported."""

    status = 409
    code = "conflict"


class NotStarted(ApiError):
    """The worker's service instance is not created yet."""

    status = 503
    code = "starting"


class NoReference(ApiError):
    """The serving model's metadata has no training reference to compare traffic with."""

    status = 503
    code = "no_reference"



def log_answer(where: str, error: ApiError) -> None:
    """One log line for an error answered by `where` (a path, an API, a gRPC method): a warning for the service's
    failures, info for a client's mistakes."""
    (logger.warning if error.status >= 500 else logger.info)(
        "%s answered %d %s: %s", where, error.status, error.code, error.message)

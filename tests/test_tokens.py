"""Named, scoped, hashed tokens (issue #21): the path->scope rule, the tokens file and its reload, the CLI, and one
real `bentoml serve` where tokens are added and revoked while it runs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from api import errors
from config import Settings
from serving.auth import BearerToken, TokenRequired, TokensUnusable, bearer_settings, required_scope, token_name
from serving.token_file import API_TOKEN_NAME, SCOPES, Scope, TokenFileError, Tokens, digest
from tests.servers import ROOT, MySQLDatabase, bentoml_serve

API_TOKEN = secrets.token_urlsafe(32)


@pytest.mark.parametrize(("method", "path", "protect_predict", "scope"), [
    ("GET", "/v1/predictions", False, "read"),
    ("GET", "/v1/predictions/7", False, "read"),
    ("GET", "/v1/quality", False, "read"),
    ("GET", "/v1/drift", False, "read"),
    ("GET", "/metrics", False, "read"),
    ("GET", "/v1/models", False, "read"),
    ("GET", "/v1/models/compare", False, "read"),
    ("GET", "/v1/models/audit", False, "read"),
    ("HEAD", "/v1/models", False, "read"),
    ("POST", "/v1/models/3/shadow", False, "operate"),
    ("POST", "/v1/models/3/canary", False, "operate"),
    ("POST", "/v1/models/3/promote", False, "operate"),
    ("POST", "/v1/models/3/idle", False, "operate"),
    ("POST", "/v1/models/rollback", False, "operate"),
    ("POST", "/v1/feedback", False, "predict"),
    ("POST", "/v1/feedback", True, "predict"),
    ("GET", "/v1/model", False, None),  # the console's model card
    ("GET", "/v1/model", True, None),
    ("POST", "/predict", False, None),
    ("POST", "/v1/classify", False, None),
    ("POST", "/v2/models/drybean_svc/infer", False, None),
    ("POST", "/predict", True, "predict"),
    ("POST", "/v1/classify", True, "predict"),
    ("POST", "/v2/models/drybean_svc/infer", True, "predict"),
    ("POST", "/v2/models/drybean_svc/versions/abc/infer", True, "predict"),
    ("GET", "/v2/models/drybean_svc", True, None),
    ("GET", "/readyz", True, None),
    ("GET", "/", True, None),
])
def test_each_path_needs_its_scope(method: str, path: str, protect_predict: bool, scope: Scope | None) -> None:
    assert required_scope(method, path, protect_predict=protect_predict) == scope


def token_line(name: str, scopes: list[str], token: str) -> str:
    """A line of the tokens file."""
    return json.dumps({"name": name, "scopes": scopes, "sha256": digest(token)}) + "\n"


def rewrite(path: Path, text: str) -> None:
    """Change the file in place, as an editor or the kubelet would, so that its signature changes."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000, before + 1_000_000))  # some file systems count mtime in coarse ticks


def test_the_api_token_has_every_scope_and_the_files_tokens_their_own(tmp_path: Path) -> None:
    reader, operator = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    path = tmp_path / "tokens"
    path.write_text("# readers and operators\n\n" + token_line("reader", ["read"], reader)
                    + token_line("operator", ["read", "operate"], operator))
    tokens = Tokens(API_TOKEN, path)
    api, read, operate = (tokens.holder(token.encode()) for token in (API_TOKEN, reader, operator))
    assert api is not None and api.name == API_TOKEN_NAME and api.scopes == set(SCOPES)
    assert read is not None and read.name == "reader" and read.scopes == {"read"}
    assert operate is not None and operate.scopes == {"read", "operate"}
    assert tokens.holder(b"not-a-token") is None
    assert tokens.holder(digest(reader).encode()) is None, "the hash is not the token"


@pytest.mark.parametrize(("text", "line", "expected"), [
    ('{"name": "a", "scopes": ["read"]}\n', 1, "sha256: Field required"),
    ("# comment\n\nnot json\n", 3, "Invalid JSON"),
    ('{"name": "a", "scopes": ["write"], "sha256": "' + "0" * 64 + '"}\n', 1, "scopes.0: Input should be"),
    ('{"name": "a", "scopes": [], "sha256": "' + "0" * 64 + '"}\n', 1, "scopes: Frozenset should have at least 1"),
    ('{"name": "a b", "scopes": ["read"], "sha256": "' + "0" * 64 + '"}\n', 1, "name: String should match"),
    ('{"name": "a", "scopes": ["read"], "sha256": "' + "0" * 64 + '", "token": "x"}\n', 1, "token: Extra inputs"),
])
def test_an_invalid_line_is_named_by_file_and_line(tmp_path: Path, text: str, line: int, expected: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(TokenFileError) as raised:
        Tokens(None, path)
    assert f"tokens file {path}, line {line}: " in str(raised.value) and expected in str(raised.value)


def test_a_pasted_token_is_never_echoed(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(32)
    path = tmp_path / "tokens"
    path.write_text(json.dumps({"name": "oops", "scopes": ["read"], "sha256": token}) + "\n")
    with pytest.raises(TokenFileError) as raised:
        Tokens(None, path)
    assert "line 1: sha256: String should match pattern" in str(raised.value) and token not in str(raised.value)


@pytest.mark.parametrize("second", ["reader", API_TOKEN_NAME])
def test_names_are_unique_and_api_token_is_reserved(tmp_path: Path, second: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(token_line("reader", ["read"], "a" * 43) + token_line(second, ["read"], "b" * 43))
    with pytest.raises(TokenFileError, match=f"line 2: the name {second} is taken"):
        Tokens(None, path)


def test_a_missing_file_stops_the_start_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(TokensUnusable) as raised:
        bearer_settings(Settings(tokens_file=path))
    assert str(raised.value) == errors.TOKENS_FILE_UNREADABLE.format(path=path, reason="No such file or directory")


def test_a_required_token_is_satisfied_by_the_api_token_or_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("")
    with pytest.raises(TokenRequired, match="DRYBEANS_TOKENS_FILE"):
        bearer_settings(Settings(require_token=True))
    assert bearer_settings(Settings(require_token=True, tokens_file=path))["tokens"] is not None
    assert bearer_settings(Settings(require_token=True, api_token=API_TOKEN))["tokens"] is not None
    assert bearer_settings(Settings())["tokens"] is None, "no tokens at all: everything stays open"


def test_the_file_is_re_read_when_it_changes_at_most_once_per_interval(tmp_path: Path) -> None:
    first, second = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    path = tmp_path / "tokens"
    path.write_text(token_line("first", ["read"], first))
    now = [0.0]
    tokens = Tokens(None, path, check_interval=1.0, clock=lambda: now[0])
    rewrite(path, token_line("first", ["read"], first) + token_line("second", ["operate"], second))
    now[0] = 0.9
    assert tokens.holder(second.encode()) is None, "not checked again within the interval"
    now[0] = 1.0
    found = tokens.holder(second.encode())
    assert found is not None and found.name == "second" and found.scopes == {"operate"}
    rewrite(path, token_line("second", ["operate"], second))  # first revoked
    now[0] = 2.0
    assert tokens.holder(first.encode()) is None and tokens.holder(second.encode()) is not None


def test_a_broken_file_keeps_the_last_good_tokens_with_one_warning_per_change(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    token = secrets.token_urlsafe(32)
    path = tmp_path / "tokens"
    path.write_text(token_line("reader", ["read"], token))
    tokens = Tokens(None, path, check_interval=0)
    rewrite(path, token_line("reader", ["read"], token) + '{"name": "half-typ')
    with caplog.at_level(logging.WARNING, logger="drybeans"):
        assert all(tokens.holder(token.encode()) is not None for _ in range(5)), "the last good set stays"
        assert len(caplog.records) == 1 and f"tokens file {path}, line 2: " in caplog.text
        assert "the 1 tokens read before stay in force" in caplog.text
        path.unlink()
        assert tokens.holder(token.encode()) is not None and tokens.holder(token.encode()) is not None
        assert len(caplog.records) == 2 and f"cannot read the tokens file {path}" in caplog.records[1].getMessage()
    path.write_text("")
    assert tokens.holder(token.encode()) is None, "a good file again: its tokens (none) are in force"


class Behind:
    """A small Starlette app behind the middleware, whose routes answer with the token's name; called over ASGI."""

    def __init__(self, tokens: Tokens | None, *, protect_predict: bool = False) -> None:
        async def who(request: Request) -> PlainTextResponse:
            return PlainTextResponse(token_name(request))

        routes = [Route(path, who, methods=["GET", "POST"])
                  for path in ("/v1/predictions", "/v1/models/rollback", "/v1/feedback", "/v1/model", "/predict")]
        self.app = BearerToken(Starlette(routes=routes), tokens, protect_predict)

    def request(self, method: str, path: str, token: str | None = None) -> httpx.Response:
        """One request, with `token` as its bearer token if given."""
        async def send() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://drybeans",
                                         ) as client:
                return await client.request(method, path, headers={"Authorization": f"Bearer {token}"} if token
                                            else {})

        return asyncio.run(send())


def test_the_middleware_refuses_what_a_token_may_not_do_and_names_who_may(tmp_path: Path) -> None:
    reader = secrets.token_urlsafe(32)
    path = tmp_path / "tokens"
    path.write_text(token_line("reader", ["read"], reader))
    service = Behind(Tokens(API_TOKEN, path))

    missing = service.request("POST", "/v1/models/rollback")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    unknown = service.request("POST", "/v1/models/rollback", "nope")
    assert unknown.status_code == 403 and unknown.json()["error"] == errors.AUTHORIZATION_REFUSED
    lacking = service.request("POST", "/v1/models/rollback", reader)
    assert lacking.status_code == 403
    assert lacking.json() == {"error": errors.SCOPE_NOT_GRANTED.format(scope="operate", name="reader"),
                              "code": "forbidden"}
    assert service.request("POST", "/v1/feedback", reader).status_code == 403
    assert service.request("GET", "/v1/predictions", reader).text == "reader"
    assert service.request("POST", "/v1/models/rollback", API_TOKEN).text == API_TOKEN_NAME
    assert service.request("GET", "/v1/model").text == "anonymous", "the model card stays open"
    assert service.request("POST", "/predict").text == "anonymous", "predictions stay open unless protected"
    assert all(reader not in answer.text and API_TOKEN not in answer.text for answer in (missing, unknown, lacking))


def test_without_tokens_everything_is_open_and_anonymous() -> None:
    service = Behind(None, protect_predict=True)
    assert service.request("POST", "/v1/models/rollback").text == "anonymous"
    assert service.request("GET", "/v1/predictions").text == "anonymous"


def tokens_cli(*arguments: str, file: Path) -> subprocess.CompletedProcess[str]:
    """`python -m serving.tokens`, as an operator runs it."""
    env = {**os.environ, "DRYBEANS_TOKENS_FILE": str(file)}
    return subprocess.run([sys.executable, "-m", "serving.tokens", *arguments], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.system
def test_the_cli_adds_lists_and_revokes_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    added = tokens_cli("add", "dashboard", "--scopes", "operate,read", file=path)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert len(token) == 43 and token not in added.stderr and token not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert tokens_cli("add", "ingest", "--scopes", "predict", file=path).returncode == 0
    holder = Tokens(None, path).holder(token.encode())
    assert holder is not None and holder.name == "dashboard" and holder.scopes == {"read", "operate"}

    listed = tokens_cli("list", file=path)
    assert listed.returncode == 0 and listed.stdout == "dashboard\tread,operate\ningest\tpredict\n"
    assert digest(token) not in listed.stdout

    duplicate = tokens_cli("add", "dashboard", "--scopes", "read", file=path)
    assert duplicate.returncode == 3 and duplicate.stdout == ""
    assert errors.TOKENS_NAME_EXISTS.format(name="dashboard", path=path) in duplicate.stderr
    assert tokens_cli("add", "x", "--scopes", "read,write", file=path).returncode == 2
    assert tokens_cli("add", API_TOKEN_NAME, "--scopes", "read", file=path).returncode == 2

    inode = path.stat().st_ino
    assert tokens_cli("revoke", "dashboard", file=path).returncode == 0
    assert path.stat().st_ino != inode, "replaced, not rewritten in place"
    assert Tokens(None, path).holder(token.encode()) is None
    assert tokens_cli("list", file=path).stdout == "ingest\tpredict\n"
    assert [entry.name for entry in path.parent.iterdir()] == ["tokens"], "no temporary file left"
    unknown = tokens_cli("revoke", "dashboard", file=path)
    assert unknown.returncode == 3 and "it holds: ingest" in unknown.stderr

    path.write_text(path.read_text() + "garbage\n")
    broken = tokens_cli("list", file=path)
    assert broken.returncode == 1 and f"tokens file {path}, line 2: " in broken.stderr


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until `condition` holds; fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"not within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.mark.system
def test_a_served_service_honours_scopes_and_picks_up_new_and_revoked_tokens(
        trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    reader = tokens_cli("add", "reader", "--scopes", "read", file=path).stdout.strip()
    operator = tokens_cli("add", "operator", "--scopes", "operate", file=path).stdout.strip()
    env = {**mysql_db.env, "DRYBEANS_TOKENS_FILE": str(path), "DRYBEANS_API_TOKEN": API_TOKEN,
           "BENTOML_CONFIG_OPTIONS": "services.drybeans.workers=1"}

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    with bentoml_serve(env, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/v1/predictions", headers=bearer(reader)).status_code == 200
        refused = http.post("/v1/models/rollback", headers=bearer(reader))
        assert refused.status_code == 403 and "operate" in refused.json()["error"]
        assert http.post("/v1/models/rollback").status_code == 401
        assert http.post("/v1/models/rollback", headers=bearer(operator)).status_code not in (401, 403)
        assert http.get("/v1/predictions", headers=bearer(operator)).status_code == 403, "operate is not read"

        late = tokens_cli("add", "late", "--scopes", "read", file=path).stdout.strip()
        assert wait_for(lambda: http.get("/v1/predictions", headers=bearer(late)).status_code == 200, 5) < 2.5
        assert tokens_cli("revoke", "reader", file=path).returncode == 0
        assert wait_for(lambda: http.get("/v1/predictions", headers=bearer(reader)).status_code == 403, 5) < 2.5

        assert http.get("/v1/predictions", headers=bearer(API_TOKEN)).status_code == 200
        assert http.get("/metrics", headers=bearer(API_TOKEN)).status_code == 200
        assert http.post("/v1/models/rollback", headers=bearer(API_TOKEN)).status_code not in (401, 403)
        assert http.post("/v1/feedback", json={"items": []}, headers=bearer(API_TOKEN)).status_code not in (401, 403)
        log = server.output()
    assert all(token not in log for token in (reader, operator, late, API_TOKEN))

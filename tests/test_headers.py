"""Security headers on every answer, and /docs built from this origin's files only (issue #19, case 13), against a
real `bentoml serve` recording into MariaDB. The same pages in Chromium: tests/test_console.py."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from api.schemas import EXAMPLE_BEAN, EXAMPLE_ROW
from console.routes import SWAGGER_FILES, SWAGGER_UI
from serving.headers import SECURITY_HEADERS
from tests.servers import MySQLDatabase, Server, bentoml_serve

pytestmark = pytest.mark.system

TOKEN = "headers-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY_BYTES = 4096

# (method, path, request arguments, the status that shows the intended code path answered)
ANSWERS: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/", {}, 200),  # the console
    ("GET", "/console/static/console.js", {}, 200),
    ("GET", "/docs", {}, 200),
    ("GET", "/docs.json", {}, 200),
    ("GET", "/docs/swagger-ui/swagger-ui-bundle.js", {}, 200),
    ("GET", "/docs/swagger-ui/swagger-initializer.js", {}, 404),  # only the files the page uses
    ("POST", "/predict", {"json": {"data": [EXAMPLE_ROW]}}, 200),  # the shortcut
    ("POST", "/predict", {"json": {"data": [[1.0]]}}, 400),
    ("POST", "/predict", {"content": b"[" * (MAX_BODY_BYTES + 1), "headers": {"Content-Type": "application/json"}},
     413),  # the body guard
    ("POST", "/v1/classify", {"json": {"beans": [EXAMPLE_BEAN], "store": False}}, 200),
    ("POST", "/v2/models/drybean_svc/infer", {"json": {"inputs": []}}, 400),
    ("GET", "/v1/predictions", {}, 401),  # the bearer token
    ("GET", "/v1/predictions", {"headers": {"Authorization": "Bearer wrong"}}, 403),
    ("GET", "/v1/predictions", {"headers": AUTH}, 200),
    ("GET", "/v1/predictions", {"headers": AUTH, "params": {"limit": 0}}, 422),
    ("GET", "/metrics", {"headers": AUTH}, 200),
    ("GET", "/readyz", {}, 200),  # the probes
    ("GET", "/livez", {}, 200),
    ("GET", "/v2/health/ready", {}, 200),
    ("GET", "/no/such/page", {}, 404),
    ("DELETE", "/v1/classify", {}, 405),
]


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    env = {**mysql_db.env, "DRYBEANS_API_TOKEN": TOKEN, "DRYBEANS_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
           "BENTOML_CONFIG_OPTIONS": "services.drybeans.workers=1"}
    with bentoml_serve(env, tmp_path_factory.mktemp("headers-logs")) as running:
        yield running


@pytest.mark.parametrize(("method", "path", "arguments", "status"), ANSWERS,
                         ids=[f"{method} {path} {status}" for method, path, _, status in ANSWERS])
def test_every_answer_carries_the_security_headers(server: Server, method: str, path: str,
                                                   arguments: dict[str, Any], status: int) -> None:
    with server.client() as http:
        answer = http.request(method, path, **arguments)
    assert answer.status_code == status, answer.text[:300]
    assert {name: answer.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


def test_the_policy_allows_scripts_and_styles_from_this_origin_only_and_no_framing() -> None:
    directives = dict(part.split(" ", 1) for part in SECURITY_HEADERS["content-security-policy"].split("; "))
    assert directives["script-src"] == directives["style-src"] == directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert SECURITY_HEADERS["x-frame-options"] == "DENY"
    assert SECURITY_HEADERS["x-content-type-options"] == "nosniff"
    assert SECURITY_HEADERS["referrer-policy"] == "no-referrer"


class References(HTMLParser):
    """Every address an HTML page makes the browser load, and the bodies of its inline scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.addresses: list[str] = []
        self.inline: list[str] = []
        self._tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for attribute in ("src", "href", "data", "action", "poster", "srcset"):
            if values.get(attribute) and not (tag == "a" and attribute == "href"):  # links load nothing
                self.addresses.append(str(values[attribute]))
        if any(name.startswith("on") for name in values) or "style" in values:
            self.inline.append(f"<{tag} {values}>")
        self._tag = tag if tag in ("script", "style") and "src" not in values else None

    def handle_data(self, data: str) -> None:
        if self._tag is not None and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._tag = None


@pytest.mark.parametrize("path", ["/docs", "/"])
def test_the_pages_load_only_files_of_this_origin_and_run_no_inline_code(server: Server, path: str) -> None:
    with server.client() as http:
        page = http.get(path)
        parser = References()
        parser.feed(page.text)
        assert parser.addresses, "the page loads its script and style sheet"
        for address in parser.addresses:
            url = urljoin(server.url + path, address)
            assert url.startswith(server.url + "/"), f"{address} is not on this origin"
            assert http.get(url).status_code == 200, f"{address} is not served"
    inline_code = [body for body in parser.inline if not body.lstrip().startswith("{")]  # console: JSON config only
    assert inline_code == []
    assert "googletagmanager" not in page.text


def test_swagger_ui_comes_from_the_bentoml_package_installed() -> None:
    for name in SWAGGER_FILES:
        assert (SWAGGER_UI / name).stat().st_size > 10_000, f"BentoML no longer ships {name}"


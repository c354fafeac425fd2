"""Abusive requests under the body limit (issue #19), against one real `bentoml serve` recording into MariaDB.

Each is refused with a small JSON 4xx, costs the worker under 100 MiB at its peak (not only once it is over), and
leaves /livez answering within a second meanwhile. The server runs one worker, so that the probe and the abuse
share its event loop; its access log is off (5,000 lines of 64 KB paths say nothing).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.schemas import EXAMPLE_BEAN, EXAMPLE_ROW
from data.schema import FEATURES
from tests.servers import MySQLDatabase, Server, bentoml_serve, worker_pids
from tests.support import MAX_ERROR_BODY, MAX_RSS_GROWTH, peak_rss, reset_peak_rss, rss

pytestmark = pytest.mark.system

V2_INFER = "/v2/models/drybean_svc/infer"
JSON = {"Content-Type": "application/json"}
MAX_PROBE_SECONDS = 1.0
ONE_WORKER = {"BENTOML_CONFIG_OPTIONS": "services.drybeans.workers=1 services.drybeans.logging.access.enabled=false"}


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    with bentoml_serve({**mysql_db.env, **ONE_WORKER}, tmp_path_factory.mktemp("logs")) as running:
        assert len(worker_pids(running.process)) == 1
        yield running


@pytest.fixture
def worker(server: Server) -> int:
    """The one worker, warmed up: a first prediction has loaded what every later one uses."""
    assert httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW], "store": False}).status_code == 200
    (pid,) = worker_pids(server.process)
    return pid


@dataclass(frozen=True)
class Cost:
    """What one request cost the worker, and what it answered."""

    answer: httpx.Response
    peak_growth: int  # bytes of resident memory above the start, at the highest
    slowest_probe: float  # seconds: the longest /livez took meanwhile


def send(server: Server, worker: int, **request: Any) -> Cost:
    """Send one request while another connection asks /livez every 50 ms; note the worker's peak memory."""
    before = rss([worker])
    reset_peak_rss([worker])
    probes: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not done.is_set() or not probes:
                started = time.monotonic()
                assert http.get("/livez").status_code == 200
                probes.append(time.monotonic() - started)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            answer = http.request(**request)
    finally:
        done.set()
        prober.join(60)
    return Cost(answer, peak_rss([worker]) - before, max(probes))


def assert_cheap_refusal(cost: Cost, status: int, says: str) -> None:
    """A small JSON error naming the problem, under 100 MiB of peak growth, /livez answered within 1 s."""
    answer = cost.answer
    assert answer.status_code == status, answer.text[:300]
    assert len(answer.content) < MAX_ERROR_BODY, f"{len(answer.content)} bytes of error"
    assert answer.headers["content-type"] == "application/json"
    assert says in answer.json()["error"], answer.json()["error"][:300]
    assert cost.peak_growth < MAX_RSS_GROWTH, f"the worker grew by {cost.peak_growth / 2**20:.0f} MiB"
    assert cost.slowest_probe < MAX_PROBE_SECONDS, f"/livez waited {cost.slowest_probe:.2f} s"


def named_inputs(count: int) -> bytes:
    return json.dumps({"inputs": [{"name": f"input-{i}", "shape": [1], "datatype": "FP64", "data": [1.0]}
                                  for i in range(count)]}).encode()


def features_body(data: Any = EXAMPLE_ROW, datatype: str = "FP64", **fields: Any) -> bytes:
    return json.dumps({"inputs": [{"name": "features", "shape": [1, 16], "datatype": datatype, "data": data}],
                       "parameters": {"store": False}, **fields}).encode()


def escaped_rows(count: int) -> bytes:
    """/predict's `data` string of `count` empty rows, every bracket and comma a JSON escape (6 bytes each)."""
    return b'{"data": "\\u005b' + b"\\u005b]\\u002c" * count + b'\\u005b]]"}'


def test_long_unique_paths_do_not_stay_in_memory(server: Server, worker: int) -> None:
    # case 5: the route-label cache kept 4,096 raw paths of up to 64 KB each (5,000 of them: +282 MiB). First in
    # the module: memory that earlier abuse left free would hide the growth.
    before = rss([worker])
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(2_500):
            answer = http.get(f"/{uuid.uuid4().hex}{'x' * 64_000}")
            assert answer.status_code == 404 and len(answer.content) < 1_000
        label = http.get(f"/v2/models/{'m' * 64_000}")  # a route with a parameter: served, not cached
    growth = rss([worker]) - before
    assert growth < MAX_RSS_GROWTH, f"the idle worker kept {growth / 2**20:.0f} MiB"
    assert label.status_code == 404 and "unknown model 'mmm" in label.json()["error"]


ABUSE = {
    # case 1: repeated names were found by a quadratic search, on the event loop (10,000: 1.6 s; 53,000: 41 s)
    "10000-named-inputs": (V2_INFER, named_inputs(10_000), JSON, 400, "inputs: List should have at most 20 items"),
    "53000-named-inputs": (V2_INFER, named_inputs(53_000), JSON, 413, "JSON values"),
    # case 2: the guard read the last Content-Type, the route the first: the container count was skipped
    "two-content-types": (V2_INFER, b'{"inputs": [' + b",".join([b"{}"] * 3_000_000) + b"]}",
                          [("Content-Type", "application/json"), ("Content-Type", "text/plain")], 415,
                          "2 Content-Type headers"),
    # case 3: brackets escaped in /predict's `data` string escaped the count (2,000,001 beans parsed)
    "escaped-brackets": ("/predict", escaped_rows(1_200_000), JSON, 413, "JSON arrays and objects"),
    # case 4: counts of values and parameters had no bound before the work
    "1.2M-v2-parameters": (V2_INFER, features_body(parameters={f"{i:x}": 0 for i in range(1_200_000)}), JSON, 413,
                           "JSON values"),
    "3.9M-numbers": ("/predict", json.dumps({"data": [[1] * 3_900_000]}).encode(), JSON, 413, "JSON values"),
    "3.9M-v2-numbers": (V2_INFER, features_body(data=[1] * 3_900_000), JSON, 413, "JSON values"),
    # case 6: client text was echoed whole into the answer (8 MB, 24 MB)
    "8MB-v2-datatype": (V2_INFER, features_body(datatype="X" * 8_000_000), JSON, 400, "datatype 'XXXX"),
    "8MB-v2-input-name": (V2_INFER, json.dumps({"inputs": [  # beside a feature's tensor: an unknown input
        {"name": "Area", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "n" * 8_000_000, "shape": [1], "datatype": "FP64", "data": [1.0]}]}).encode(), JSON, 400,
                          "unknown input 'nnnn"),
    "8MB-v2-output-name": (V2_INFER, features_body(outputs=[{"name": "o" * 8_000_000}]), JSON, 400,
                           "unknown output 'oooo"),
    "8MB-feedback-variety": ("/v1/feedback", json.dumps({"items": [{"record_id": 1, "variety": "V" * 8_000_000}]})
                             .encode(), JSON, 422, "unknown variety 'VVVV"),
    "8MB-classify-field-name": ("/v1/classify", json.dumps({"beans": [{**EXAMPLE_BEAN, "k" * 8_000_000: 1}]})
                                .encode(), JSON, 400,
                                "beans.0.kkkk"),
}


@pytest.mark.parametrize("case", ABUSE.values(), ids=ABUSE.keys())
def test_an_abusive_body_is_refused_cheaply_and_the_worker_keeps_answering(
        server: Server, worker: int, case: tuple[str, bytes, Any, int, str]) -> None:
    path, body, headers, status, says = case
    assert_cheap_refusal(send(server, worker, method="POST", url=path, content=body, headers=headers), status, says)
    assert httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW], "store": False}).status_code == 200


def test_a_since_beyond_the_databases_range_is_a_json_422_naming_the_range(server: Server, worker: int) -> None:
    # case 12: 9999-12-31T23:59:59-14:00 is in the year 10000 in UTC: it was a plain-text 500
    with server.client() as http:
        for since in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "0999-12-31T23:59:59Z"):
            answer = http.get("/v1/quality", params={"since": since})
            assert answer.status_code == 422 and answer.headers["content-type"] == "application/json"
            assert "since must lie between 1000-01-01 and 9999-12-31T23:59:59 (UTC)" in answer.json()["error"]
        assert http.get("/v1/quality", params={"since": "9999-12-31T23:59:59Z"}).json()["labelled"] == 0


def test_a_body_without_content_type_is_json_only_when_no_web_page_sent_it(
        server: Server, worker: int, mysql_db: MySQLDatabase) -> None:
    # case 14: any web page could post a V2 request with no Content-Type (a CORS "simple request") and record it
    body = json.dumps({"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP64",
                                   "data": EXAMPLE_ROW}]}).encode()
    with server.client() as http:
        before = _rows(mysql_db)
        from_page = http.post(V2_INFER, content=body, headers={"Origin": "https://example.test"})
        assert from_page.status_code == 415
        assert "Content-Type: application/json" in from_page.json()["error"]
        assert _rows(mysql_db) == before
        as_tritonclient = http.post(V2_INFER, content=body)  # geventhttpclient: no Content-Type, no Origin
        assert as_tritonclient.status_code == 200, as_tritonclient.text
        assert as_tritonclient.json()["parameters"]["stored"] == "committed"
        assert _rows(mysql_db) == before + 1


def test_the_largest_legitimate_bodies_pass_the_counts(server: Server, worker: int) -> None:
    """The guard's bounds leave room for the biggest requests the service takes: 10,000 beans in every form."""
    rows = [EXAMPLE_ROW] * 10_000
    columns = [{"name": name, "shape": [10_000, 1], "datatype": "FP64", "parameters": {"a": 1, "b": 2},
                "data": [[row[i]] for row in rows]} for i, name in enumerate(FEATURES)]
    with server.client() as http:
        for path, body in [("/predict", {"data": json.dumps(rows), "store": False}),
                           ("/v1/classify", {"beans": [dict(zip(FEATURES, row, strict=True)) for row in rows],
                                             "store": False}),
                           (V2_INFER, {"id": "x", "inputs": columns, "parameters": {"store": False},
                                       "outputs": [{"name": "label", "parameters": {"c": 1}}]})]:
            answer = http.post(path, json=body)
            assert answer.status_code == 200, (path, answer.text[:300])


def _rows(db: MySQLDatabase) -> int:
    with db.engine().connect() as connection:
        return int(connection.scalar(text("SELECT COUNT(*) FROM drybeans")))

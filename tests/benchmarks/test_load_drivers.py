"""The benchmark's V2 load drivers against small real servers: wrk posts binary bodies byte for byte with their
header, and the gRPC driver's counts are the server's."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from tests.benchmarks import grpc_load, load, v2_bodies
from tests.support import require

pytestmark = pytest.mark.system


class Recorder:
    """What a test server received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []


@pytest.fixture
def http_server() -> Iterator[tuple[str, Recorder]]:
    """An HTTP/1.1 keep-alive server that records every POST and answers 200 (for wrk, which must be installed)."""
    require(shutil.which("wrk") is not None, "wrk (apt-get install wrk)")
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with recorder.lock:
                recorder.bodies.append(body)
                recorder.headers.append({key.lower(): value for key, value in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def grpc_server() -> Iterator[tuple[str, Recorder]]:
    """A ModelInfer server that records every request's bytes and answers OK only to the benchmark's request."""
    recorder = Recorder()
    expected = v2_bodies.grpc_request([load.EXAMPLE_BEAN], store=False)

    def infer(request: bytes, context: grpc.ServicerContext) -> bytes:
        with recorder.lock:
            recorder.bodies.append(request)
        if request != expected:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not the benchmark's request")
        return b"answer"

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    service, method = v2_bodies.GRPC_METHOD.strip("/").split("/")
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(infer)})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", recorder
    finally:
        server.stop(grace=None)


def test_wrk_posts_the_binary_body_byte_for_byte_with_its_header(http_server: tuple[str, Recorder]) -> None:
    url, recorder = http_server
    binary = v2_bodies.binary_body([load.EXAMPLE_BEAN], store=False)
    assert b"\0" in binary.body  # what an environment variable cannot carry: the reason for the body file

    result = load.run_wrk(url + v2_bodies.REST_PATH, binary.body, connections=2, seconds=1, headers=binary.headers)

    assert result.errors == 0 and result.ok > 0
    assert recorder.bodies and all(body == binary.body for body in recorder.bodies)
    assert all(headers["inference-header-content-length"] == binary.headers[v2_bodies.BINARY_HEADER]
               for headers in recorder.headers)
    assert all("content-type" not in headers for headers in recorder.headers)  # as tritonclient.http sends it


def test_wrk_still_posts_json_with_its_content_type(http_server: tuple[str, Recorder]) -> None:
    url, recorder = http_server
    body = v2_bodies.json_body([load.EXAMPLE_BEAN], store=True)

    result = load.run_wrk(url, body, connections=2, seconds=1)

    assert result.errors == 0 and result.ok > 0
    assert all(sent == body.encode() for sent in recorder.bodies)
    assert all(headers["content-type"] == "application/json" for headers in recorder.headers)


def test_grpc_driver_counts_what_the_server_answered(grpc_server: tuple[str, Recorder]) -> None:
    target, recorder = grpc_server
    request = v2_bodies.grpc_request([load.EXAMPLE_BEAN], store=False)

    result = grpc_load.run_load(target, request, processes=2, channels=2, in_flight=2, seconds=1)

    assert result.errors == 0 and result.ok > 0
    assert result.requests == len(recorder.bodies)  # every call sent was answered and counted, none twice
    assert set(recorder.bodies) == {request}
    assert 0.9 < result.seconds < 2 and 0 < result.p50_ms <= result.p99_ms


def test_grpc_driver_counts_refusals_as_errors(grpc_server: tuple[str, Recorder]) -> None:
    target, recorder = grpc_server
    other = v2_bodies.grpc_request([load.EXAMPLE_BEAN], store=True)

    loaded = grpc_load.run_load(target, other, processes=1, channels=1, in_flight=1, seconds=0.5)
    sequential = grpc_load.run_sequential(target, other, requests=3)

    assert loaded.ok == 0 and loaded.errors == loaded.requests == len(recorder.bodies) - 3 > 0
    assert sequential.ok == 0 and sequential.errors == 3
    with pytest.raises(grpc.RpcError) as refused:
        grpc_load.call_once(target, other)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

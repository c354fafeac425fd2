"""A V2 gRPC load driver: one serialized ModelInferRequest sent by N channels x M calls in flight for D seconds.

    .venv/bin/python -m tests.benchmarks.grpc_load --target 127.0.0.1:3002 --request request.bin \\
        [--processes 2] [--channels 8] [--in-flight 2] [--seconds 10]

It runs in `--processes` processes (asyncio + grpc.aio each), so that the client is not the bottleneck: each
connects its channels (one TCP connection per channel), says it is ready, and starts when the parent says go, so
that all of them load the server over the same seconds. The request is sent as bytes and the answer kept as
bytes: no protobuf work in the client. Prints one JSON line: requests, OK answers, errors, seconds, p50 and p99.
`run_sequential` sends large requests one at a time, as the harness does over REST.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from tests.benchmarks.load import LoadResult, percentile
from tests.benchmarks.processes import finish_bounded
from tests.benchmarks.v2_bodies import GRPC_METHOD

CALL_TIMEOUT_SECONDS = 5
READY_TIMEOUT_SECONDS = 60
# One TCP connection per channel (grpc shares one between channels to the same target otherwise); no size limit on
# answers (10,000 beans' scores and probabilities are over 1 MB).
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1),
                   ("grpc.max_send_message_length", -1)]
ROOT = Path(__file__).resolve().parents[2]


def run_load(target: str, request: bytes, *, processes: int, channels: int, in_flight: int,
             seconds: float) -> LoadResult:
    """Drive `target` with `request` from `processes` driver processes for `seconds`; their results merged."""
    with tempfile.NamedTemporaryFile(prefix="grpc-request-") as file:
        file.write(request)
        file.flush()
        command = [sys.executable, "-m", "tests.benchmarks.grpc_load", "--target", target, "--request", file.name,
                   "--channels", str(channels), "--in-flight", str(in_flight), "--seconds", f"{seconds:g}",
                   "--worker"]
        drivers = [subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(processes)]
        try:
            for driver in drivers:  # each prints "ready" once its channels are connected
                assert driver.stdout is not None
                if driver.stdout.readline().strip() != "ready":
                    _, error = finish_bounded(driver, 10, "the gRPC load driver")
                    raise RuntimeError(f"the gRPC load driver did not connect to {target}: {error.strip()}")
            for driver in drivers:
                assert driver.stdin is not None
                driver.stdin.write("go\n")
                driver.stdin.flush()
            outputs = [finish_bounded(driver, seconds + 60, "the gRPC load driver")[0] for driver in drivers]
        finally:
            for driver in drivers:
                if driver.poll() is None:
                    driver.kill()
                    driver.wait(10)
    found = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    latencies = [latency for result in found for latency in result["latencies"]]
    requests, ok = sum(result["requests"] for result in found), sum(result["ok"] for result in found)
    return LoadResult(requests=requests, seconds=max(result["seconds"] for result in found), ok=ok,
                      errors=requests - ok, p50_ms=statistics.median(latencies) * 1000 if latencies else 0.0,
                      p99_ms=percentile(latencies, 99) * 1000 if latencies else 0.0)


def call_once(target: str, request: bytes, *, timeout: float = 120) -> bytes:
    """One ModelInfer call; the serialized answer (grpc.RpcError when the server refuses it)."""
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        grpc.channel_ready_future(channel).result(timeout=READY_TIMEOUT_SECONDS)
        answer: bytes = channel.unary_unary(GRPC_METHOD)(request, timeout=timeout)
        return answer


def run_sequential(target: str, request: bytes, *, requests: int, timeout: float = 120) -> LoadResult:
    """Send `request` `requests` times, one after another, over one channel."""
    latencies: list[float] = []
    errors = 0
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        grpc.channel_ready_future(channel).result(timeout=READY_TIMEOUT_SECONDS)
        infer = channel.unary_unary(GRPC_METHOD)
        for _ in range(requests):
            started = time.perf_counter()
            try:
                infer(request, timeout=timeout)
            except grpc.RpcError:
                errors += 1
            latencies.append(time.perf_counter() - started)
    return LoadResult(requests=requests, seconds=sum(latencies), ok=requests - errors, errors=errors,
                      p50_ms=statistics.median(latencies) * 1000, p99_ms=percentile(latencies, 99) * 1000)


async def drive(target: str, request: bytes, *, channels: int, in_flight: int, seconds: float) -> dict[str, object]:
    """One driver process: connect, say ready, wait for go, then keep `in_flight` calls on each channel."""
    opened = [grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(channels)]
    await asyncio.wait_for(asyncio.gather(*(channel.channel_ready() for channel in opened)), READY_TIMEOUT_SECONDS)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    latencies: list[float] = []
    counts = {"requests": 0, "ok": 0}
    started = time.perf_counter()
    deadline = started + seconds

    async def caller(infer: grpc.aio.UnaryUnaryMultiCallable) -> None:
        while (sent := time.perf_counter()) < deadline:
            try:
                await infer(request, timeout=CALL_TIMEOUT_SECONDS)
                counts["ok"] += 1
            except grpc.aio.AioRpcError:
                pass
            counts["requests"] += 1
            latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(caller(channel.unary_unary(GRPC_METHOD)) for channel in opened for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(channel.close() for channel in opened))
    return {**counts, "seconds": elapsed, "latencies": latencies}


def main(argv: list[str] | None = None) -> int:
    """Run as one driver (--worker, as `run_load` starts it) or as the parent of `--processes` drivers."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="host:port of the gRPC server")
    parser.add_argument("--request", type=Path, required=True, help="a file holding a serialized ModelInferRequest")
    parser.add_argument("--processes", type=int, default=2, help="driver processes (default: 2)")
    parser.add_argument("--channels", type=int, default=8, help="channels (connections) per process (default: 8)")
    parser.add_argument("--in-flight", type=int, default=2, help="calls in flight per channel (default: 2)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of load (default: 10)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    request = args.request.read_bytes()
    if args.worker:
        print(json.dumps(asyncio.run(drive(args.target, request, channels=args.channels, in_flight=args.in_flight,
                                           seconds=args.seconds))), flush=True)
        return 0
    result = run_load(args.target, request, processes=args.processes, channels=args.channels,
                      in_flight=args.in_flight, seconds=args.seconds)
    print(json.dumps({"requests": result.requests, "ok": result.ok, "errors": result.errors,
                      "seconds": result.seconds, "requests_per_second": result.requests_per_second,
                      "p50_ms": result.p50_ms, "p99_ms": result.p99_ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The committed gRPC stubs are what the pinned grpcio-tools generates from the published proto."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("protocol/proto/open_inference_grpc.proto")
GENERATED = ("open_inference_grpc_pb2.py", "open_inference_grpc_pb2.pyi", "open_inference_grpc_pb2_grpc.py")


def test_stubs_match_the_proto(tmp_path: Path) -> None:
    (tmp_path / PROTO.parent).mkdir(parents=True)
    shutil.copy(ROOT / PROTO, tmp_path / PROTO)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", ".", "--python_out=.", "--pyi_out=.",
                    "--grpc_python_out=.", str(PROTO)], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    for name in GENERATED:
        assert (tmp_path / PROTO.parent / name).read_bytes() == (ROOT / PROTO.parent / name).read_bytes(), (
            f"{PROTO.parent / name} differs from what the proto generates: regenerate it "
            "(protocol/proto/README.md)")


def test_the_proto_is_the_published_one() -> None:
    """The service, and the messages clients send, as the Open Inference Protocol names them."""
    proto = (ROOT / PROTO).read_text()
    assert "package inference;" in proto
    for call in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"):
        assert f"rpc {call}(" in proto
    assert "repeated bytes raw_input_contents = 7;" in proto
    assert "repeated bytes raw_output_contents = 6;" in proto

"""The V2 peer the benchmark compares against: MLServer 1.7 with its scikit-learn runtime, serving our pipeline.

MLServer's dependencies conflict with this project's, so it runs from a virtualenv of its own: `--mlserver-venv`
(default $DRYBEANS_BENCH_MLSERVER_VENV, else .venv-mlserver, created with pip on first use). The pipeline the run
trained is loaded from the run's BentoML model store (`bentoml.sklearn.load_model`) and exported with joblib to a
model-settings.json folder for `mlserver_sklearn.SKLearnModel`.

    python -m tests.benchmarks.v2_peers export DIRECTORY    # with BENTOML_HOME set: the export step alone
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sklearn

from tests.benchmarks import processes
from tests.benchmarks.v2_bodies import MODEL
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = Path(os.environ.get("DRYBEANS_BENCH_MLSERVER_VENV") or ROOT / ".venv-mlserver")
MLSERVER_VERSION = "1.7.1"
# uvloop 0.22 breaks MLServer 1.7's inference workers; the model's pickle needs the scikit-learn it was saved with.
REQUIREMENTS = (f"mlserver=={MLSERVER_VERSION}", f"mlserver-sklearn=={MLSERVER_VERSION}", "uvloop<0.22",
                f"scikit-learn=={sklearn.__version__}")
PACKAGES = ("mlserver", "mlserver-sklearn", "uvloop", "scikit-learn", "numpy")
WORKERS = 2
INSTALL_TIMEOUT_SECONDS = 1200


@dataclass(frozen=True)
class MLServer:
    """A running MLServer: its REST server (with pids and log) and its gRPC address."""

    rest: processes.RunningServer
    grpc_target: str


def mlserver_venv(venv: Path) -> dict[str, str]:
    """The MLServer virtualenv at `venv`, created with pip when missing; its packages' versions, checked."""
    if not (venv / "bin" / "mlserver").exists():
        print(f"creating {venv} for MLServer ({' '.join(REQUIREMENTS)}; once, a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *REQUIREMENTS], check=True,
                       timeout=INSTALL_TIMEOUT_SECONDS)
    script = ("import importlib.metadata as m, json, sys; "
              "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))")
    found = subprocess.run([str(venv / "bin" / "python"), "-c", script, *PACKAGES], capture_output=True, text=True,
                           timeout=60, check=True)
    versions: dict[str, str] = json.loads(found.stdout)
    if versions["mlserver"] != MLSERVER_VERSION or versions["scikit-learn"] != sklearn.__version__:
        raise RuntimeError(f"{venv} holds mlserver {versions['mlserver']} and scikit-learn {versions['scikit-learn']};"
                           f" the benchmark needs mlserver {MLSERVER_VERSION} and the scikit-learn the model was "
                           f"trained with, {sklearn.__version__}: remove it (the harness recreates it) or pass "
                           "--mlserver-venv")
    return versions


def model_repository(bentoml_home: Path, directory: Path, *, http_port: int, grpc_port: int) -> Path:
    """An MLServer model repository in `directory` holding the run's trained pipeline, and its settings.json."""
    model = directory / MODEL
    model.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "tests.benchmarks.v2_peers", "export", str(model)], cwd=ROOT,
                   env={**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"},
                   capture_output=True, text=True, timeout=120, check=True)
    (model / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}))
    # Production settings: no debug logging; two inference workers, as our server has two.
    (directory / "settings.json").write_text(json.dumps({
        "debug": False, "host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port,
        "metrics_port": free_port(), "parallel_workers": WORKERS}))
    return directory


@contextmanager
def running_mlserver(venv: Path, bentoml_home: Path, scratch: Path, *, log_dir: Path,
                     ready_timeout: float) -> Iterator[MLServer]:
    """`mlserver start` on a repository holding the run's pipeline, ready when its model is; stopped after."""
    http_port, grpc_port = free_port(), free_port()
    repository = model_repository(bentoml_home, scratch / "mlserver", http_port=http_port, grpc_port=grpc_port)
    print(f"starting MLServer {MLSERVER_VERSION}", flush=True)
    # From inside the repository: MLServer keeps its .metrics and .envs folders in the working directory.
    with processes.running_server("mlserver", [str(venv / "bin" / "mlserver"), "start", "."], cwd=repository,
                                  env={}, probe=f"/v2/models/{MODEL}/ready", log_dir=log_dir,
                                  ready_timeout=ready_timeout, port=http_port) as server:
        yield MLServer(server, f"127.0.0.1:{grpc_port}")


def export(directory: Path) -> None:
    """Save the model store's drybean_svc pipeline as `directory`/model.joblib (run with BENTOML_HOME set)."""
    import bentoml
    import joblib

    joblib.dump(bentoml.sklearn.load_model(f"{MODEL}:latest"), directory / "model.joblib")


if __name__ == "__main__":
    if sys.argv[1:2] != ["export"] or len(sys.argv) != 3:
        sys.exit(__doc__)
    export(Path(sys.argv[2]))

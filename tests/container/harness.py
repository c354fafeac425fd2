"""Helpers for the tests that build and run the OCI image: the Docker engine, images, waits."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent
DEFAULT_DOCKER_HOST = "unix:///var/lib/drybeans-docker/docker.sock"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", "/var/cache")) / "drybeans-test"
APP_IMAGE = "drybeans:latest"
MYSQL_IMAGE = "drybeans-test/mysql:8"
BUILD_TIMEOUT_SECONDS = 900
COMMAND_TIMEOUT_SECONDS = 120

# The tutorial's request and the answer the trained model gives to it.
TUTORIAL_REQUEST = {"data": "[[33958.0, 677.1, 253.69, 171.05, 1.48, 0.74, 34241.0, 207.93, 0.82, 0.99, 0.93, "
                            "0.82, 0.01, 0.0, 0.67, 1.0]]"}
TUTORIAL_ANSWER = {"predictions": '["DERMASON"]'}


def docker_host() -> str | None:
    """The DOCKER_HOST of an engine that answers (the environment's, else start_dockerd.sh's default), or None."""
    host = os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_HOST)
    if shutil.which("docker") is None:
        return None
    try:
        subprocess.run(["docker", "info"], env={**os.environ, "DOCKER_HOST": host}, capture_output=True,
                       timeout=15, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return host


@functools.cache
def buildkit_cli_dir() -> Path | None:
    """A directory holding a BuildKit-capable `docker` to put first on PATH, or None when PATH's one will do."""
    buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, timeout=30, check=False)
    if buildx.returncode == 0 or not Path("/usr/bin/docker").is_file():
        return None
    # Without the buildx plugin a recent CLI refuses DOCKER_BUILDKIT=1, which bentoml sets; Debian's
    # docker.io CLI (20.10) has BuildKit built in.
    cli_dir = Path(tempfile.mkdtemp(prefix="drybeans-docker-cli-"))
    (cli_dir / "docker").symlink_to("/usr/bin/docker")
    return cli_dir


def build_env(host: str) -> dict[str, str]:
    """The environment for docker and `bentoml containerize`: this engine, and a docker CLI that can use BuildKit."""
    env = {**os.environ, "DOCKER_HOST": host, "BENTOML_DO_NOT_TRACK": "true"}
    cli_dir = buildkit_cli_dir()
    if cli_dir is not None:
        env["PATH"] = f"{cli_dir}{os.pathsep}{env['PATH']}"
    return env


def run(args: list[str], env: dict[str, str], timeout: float = COMMAND_TIMEOUT_SECONDS,
        cwd: Path | None = None) -> str:
    """Run a command to completion; its stdout, or an AssertionError carrying its output."""
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def ensure_scaffold_image(script: str, host: str) -> None:
    """Build a stand-in image with one of the idempotent scripts beside this file."""
    run([str(SCRIPTS / script), str(CACHE_DIR)], env=build_env(host), timeout=BUILD_TIMEOUT_SECONDS)


@functools.cache
def drybeans_image(bentoml_home: Path, host: str) -> str:
    """`bentoml build` the repository's Bento into bentoml_home and `bentoml containerize` it as drybeans:latest.

    As docs/deployment.md builds it: containerize runs in the temporary directory, where BentoML puts the build context,
    since BentoML 1.4.36-1.4.39 refuse a dockerfile_template outside the working directory (bentoml/BentoML#5566).
    """
    env = {**build_env(host), "BENTOML_HOME": str(bentoml_home)}
    ensure_scaffold_image("build_base_image.sh", host)
    bentoml = [sys.executable, "-m", "bentoml"]
    run([*bentoml, "build", "--output", "tag"], env=env, cwd=ROOT, timeout=BUILD_TIMEOUT_SECONDS)
    run([*bentoml, "containerize", "drybeans:latest", "--image-tag", APP_IMAGE], env=env,
        cwd=Path(tempfile.gettempdir()), timeout=BUILD_TIMEOUT_SECONDS)
    # The previous drybeans:latest is now untagged: drop such images so repeated CI runs do not fill the disk.
    run(["docker", "image", "prune", "--force"], env=env)
    return APP_IMAGE


def free_port() -> int:
    """A TCP port nobody listens on at the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 1.0) -> None:
    """Poll check() until it is true, failing with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

"""The OCI image made by `bentoml containerize drybeans:latest`, run for real against the host's MariaDB."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pymysql
import pytest

from data.schema import FEATURES
from tests.container import harness
from tests.support import require
from tests.synthetic_photos import held_out_rows, render, scatter

pytestmark = pytest.mark.deploy

HOST_MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
CREDENTIAL_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL|API_KEY", re.IGNORECASE)
READY_TIMEOUT_SECONDS = 180
MAX_IMAGE_BYTES = 600_000_000  # 600 MB as docker counts them; BentoML's default Dockerfile made 1.19 GB


def host_mysql_answers() -> bool:
    """Whether the host's MariaDB accepts root on 127.0.0.1:3306."""
    try:
        pymysql.connect(connect_timeout=5, **HOST_MYSQL).close()
    except pymysql.MySQLError:
        return False
    return True


@pytest.fixture(scope="session")  # session: checked before the session-scoped model is trained
def docker_env() -> dict[str, str]:
    """The environment for docker commands against an engine that answers."""
    host = harness.docker_host()
    require(host is not None, "a Docker engine (tests/container/start_dockerd.sh)")
    assert host is not None
    return harness.build_env(host)


@pytest.fixture(scope="module")
def image(docker_env: dict[str, str], trained_model_home: Path) -> str:
    """The drybeans image, built from this repository with the session's trained model."""
    return harness.drybeans_image(trained_model_home, docker_env["DOCKER_HOST"])


@pytest.fixture()
def database() -> Iterator[dict[str, str]]:
    """A dedicated database and user on the host's MariaDB, as the container's MYSQL_* settings; dropped after."""
    require(host_mysql_answers(), "MariaDB on 127.0.0.1:3306")
    suffix = secrets.token_hex(4)
    settings = {"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": "3306", "MYSQL_DB": f"drybeans_ct_{suffix}",
                "MYSQL_USER": f"drybeans_ct_{suffix}", "MYSQL_PASSWORD": secrets.token_urlsafe(16)}
    account = f"'{settings['MYSQL_USER']}'@'127.0.0.1'"
    with pymysql.connect(autocommit=True, **HOST_MYSQL) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{settings['MYSQL_DB']}`")
        cursor.execute(f"CREATE USER {account} IDENTIFIED BY %s", (settings["MYSQL_PASSWORD"],))
        cursor.execute(f"GRANT ALL ON `{settings['MYSQL_DB']}`.* TO {account}")
    yield settings
    with pymysql.connect(autocommit=True, **HOST_MYSQL) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP USER IF EXISTS {account}")
        cursor.execute(f"DROP DATABASE IF EXISTS `{settings['MYSQL_DB']}`")


@pytest.fixture()
def container(image: str, database: dict[str, str], docker_env: dict[str, str]) -> Iterator[tuple[str, int, int]]:
    """The image running on the host network with the dedicated database; its id, HTTP and gRPC ports. Removed
    after."""
    port, grpc_port = harness.free_port(), harness.free_port()
    settings = [f"--env={name}={value}" for name, value in database.items()]
    container_id = harness.run(["docker", "run", "--detach", "--network=host", f"--env=BENTOML_PORT={port}",
                                f"--env=DRYBEANS_GRPC_PORT={grpc_port}", *settings, image], env=docker_env).strip()
    try:
        yield container_id, port, grpc_port
    finally:
        logs = subprocess.run(["docker", "logs", "--tail=40", container_id], env=docker_env, capture_output=True,
                              text=True, timeout=30, check=False)
        print(logs.stdout, logs.stderr)  # shown by pytest when the test failed
        subprocess.run(["docker", "rm", "--force", container_id], env=docker_env, capture_output=True,
                       timeout=60, check=False)


def inspect(image: str, docker_env: dict[str, str]) -> dict[str, object]:
    """`docker image inspect` of the image, as a dict."""
    return dict(json.loads(harness.run(["docker", "image", "inspect", image], env=docker_env))[0])


def is_ready(port: int) -> bool:
    """Whether the service answers 200 on /readyz."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_image_runs_as_a_non_root_user(image: str, docker_env: dict[str, str]) -> None:
    """The image's user is not root, by name and by uid."""
    config = inspect(image, docker_env)["Config"]
    assert isinstance(config, dict)
    assert config["User"] not in ("", "root", "0")
    uid = harness.run(["docker", "run", "--rm", "--entrypoint=id", image, "-u"], env=docker_env).strip()
    assert uid != "0"


def test_image_is_under_600_mb(image: str, docker_env: dict[str, str]) -> None:
    """Without BentoML's compiler toolchain and the packages' test suites (deploy/image), the image is under 600 MB."""
    size = int(harness.run(["docker", "image", "inspect", "--format={{.Size}}", image], env=docker_env))
    assert size < MAX_IMAGE_BYTES, f"the image is {size / 1e6:.0f} MB"


def test_image_holds_no_credentials(image: str, docker_env: dict[str, str]) -> None:
    """The image's environment and build history set no password, token or database URL, and it has no .env file."""
    config = inspect(image, docker_env)["Config"]
    assert isinstance(config, dict)
    names = [entry.split("=", 1)[0] for entry in config["Env"]]
    assert [name for name in names if CREDENTIAL_NAME.search(name)] == []
    history = harness.run(["docker", "history", "--no-trunc", "--format={{.CreatedBy}}", image], env=docker_env)
    assert not re.search(r"(MYSQL_PASSWORD|DATABASE_URL)=\S", history)
    find_env_files = ["/", "-xdev", "(", "-name", ".env", "-o", "-name", "*.secret.env", ")", "-print"]
    env_files = harness.run(["docker", "run", "--rm", "--user=0", "--entrypoint=find", image, *find_env_files],
                            env=docker_env)
    assert env_files == ""


def test_container_predicts_and_records_the_prediction(container: tuple[str, int, int],
                                                       database: dict[str, str]) -> None:
    """The tutorial's request answers DERMASON and leaves one row named DERMASON in the database."""
    container_id, port, _ = container
    harness.wait_until(lambda: is_ready(port), READY_TIMEOUT_SECONDS, f"/readyz of container {container_id[:12]}")
    response = httpx.post(f"http://127.0.0.1:{port}/predict", json=harness.TUTORIAL_REQUEST, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == harness.TUTORIAL_ANSWER
    with pymysql.connect(database=database["MYSQL_DB"], **HOST_MYSQL) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT name FROM drybeans")
        assert cursor.fetchall() == (("DERMASON",),)


def test_container_measures_the_beans_in_a_photo(container: tuple[str, int, int]) -> None:
    """POST /v1/photos in the image as it ships (scikit-image and Pillow without what photos/ never imports): every
    bean of a synthetic photo found and classified, as PNG and as JPEG."""
    container_id, port, _ = container
    harness.wait_until(lambda: is_ready(port), READY_TIMEOUT_SECONDS, f"/readyz of container {container_id[:12]}")
    rows = held_out_rows(8, seed=3)[list(FEATURES)].to_numpy()
    drawn = render(scatter(rows, 1400, 1000, pairs=1), 1400, 1000, blur=1.0, noise=4)
    for name, kind in (("beans.png", "PNG"), ("beans.jpg", "JPEG")):
        response = httpx.post(f"http://127.0.0.1:{port}/v1/photos", files={"image": (name, drawn.encode(kind))},
                              data={"store": "false"}, timeout=60)
        assert response.status_code == 200, response.text
        assert len(response.json()["beans"]) == len(rows), name


def test_container_stops_on_sigterm(container: tuple[str, int, int], docker_env: dict[str, str]) -> None:
    """`docker stop` ends the service within its grace period, not by SIGKILL."""
    container_id, port, _ = container
    harness.wait_until(lambda: is_ready(port), READY_TIMEOUT_SECONDS, f"/readyz of container {container_id[:12]}")
    harness.run(["docker", "stop", "--time=20", container_id], env=docker_env, timeout=60)
    state = json.loads(harness.run(["docker", "inspect", "--format={{json .State}}", container_id], env=docker_env))
    assert state["Running"] is False
    assert state["ExitCode"] != 137, "the service ignored SIGTERM and was killed"


def test_image_serves_v2_over_grpc(image: str, container: tuple[str, int, int], docker_env: dict[str, str]) -> None:
    """The image turns gRPC on (port 3002, exposed) and the container answers gRPC health checks."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    config = inspect(image, docker_env)["Config"]
    assert isinstance(config, dict)
    assert "DRYBEANS_GRPC_PORT=3002" in config["Env"]
    assert "3002/tcp" in config["ExposedPorts"]
    container_id, port, grpc_port = container
    harness.wait_until(lambda: is_ready(port), READY_TIMEOUT_SECONDS, f"/readyz of container {container_id[:12]}")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING

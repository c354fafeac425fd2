"""deploy/compose for real: MySQL stand-in, one-shot migration, the app; data survives `down` and `up`; nothing
starts without an API token, and predictions need it (issue #19, case 14); V2 over gRPC is published beside the
HTTP API, on the same address, under the same token (issue #20)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.container import harness
from tests.support import require

pytestmark = pytest.mark.deploy

COMPOSE_FILE = harness.ROOT / "deploy" / "compose" / "docker-compose.yml"
EXAMPLE_ENV = COMPOSE_FILE.with_name(".env.example")
HEALTHY_TIMEOUT_SECONDS = 240
COMPOSE_TIMEOUT_SECONDS = 300
API_PORT, GRPC_PORT = 3000, 3002


@dataclass(frozen=True)
class Compose:
    """docker-compose bound to one isolated project: its file, env file, name and published app ports."""

    command: list[str]
    env: dict[str, str]
    port: int
    grpc_port: int

    def __call__(self, *args: str) -> str:
        """Run a docker-compose subcommand to completion; its stdout."""
        return harness.run([*self.command, *args], env=self.env, timeout=COMPOSE_TIMEOUT_SECONDS)


def test_compose_file_is_valid_with_the_example_env() -> None:
    """docker-compose accepts the file with .env.example's values, and no credential is left unset."""
    require(shutil.which("docker-compose") is not None, "docker-compose (tests/container/start_dockerd.sh)")
    harness.run(["docker-compose", "--file", str(COMPOSE_FILE), "--env-file", str(EXAMPLE_ENV), "config", "--quiet"],
                env=dict(os.environ))


def test_the_example_is_closed_by_default() -> None:
    """With .env.example's values: the app needs its token, protects predictions, and listens on loopback only."""
    require(shutil.which("docker-compose") is not None, "docker-compose (tests/container/start_dockerd.sh)")
    rendered = yaml.safe_load(harness.run(["docker-compose", "--file", str(COMPOSE_FILE), "--env-file",
                                           str(EXAMPLE_ENV), "config"], env=dict(os.environ)))
    app = rendered["services"]["app"]
    assert app["environment"]["DRYBEANS_REQUIRE_TOKEN"] == "true"
    assert app["environment"]["DRYBEANS_PROTECT_PREDICT"] == "true"
    assert app["environment"]["DRYBEANS_API_TOKEN"]
    assert [str(port).split(":")[0] for port in app["ports"]] == ["127.0.0.1", "127.0.0.1"]


def published(bind: str | None = None, grpc_host_port: str | None = None) -> tuple[set[tuple[str, int, int]], str]:
    """The app's published ports as (address, host port, container port), and its DRYBEANS_GRPC_PORT, as
    docker-compose renders them with .env.example and these overrides from the environment."""
    overrides = {name: value for name, value in (("DRYBEANS_BIND", bind), ("DRYBEANS_GRPC_HOST_PORT", grpc_host_port))
                 if value is not None}
    rendered = yaml.safe_load(harness.run(["docker-compose", "--file", str(COMPOSE_FILE), "--env-file",
                                           str(EXAMPLE_ENV), "config"], env={**os.environ, **overrides}))
    app = rendered["services"]["app"]
    ports: set[tuple[str, int, int]] = set()
    for port in app["ports"]:
        address, host, container = str(port).removesuffix("/tcp").split(":")
        ports.add((address, int(host), int(container)))
    return ports, app["environment"]["DRYBEANS_GRPC_PORT"]


def test_grpc_is_published_like_the_api_on_the_bind_address() -> None:
    """Issue #20: the app serves V2 over gRPC on 3002, published beside 3000, on DRYBEANS_BIND (loopback unless
    changed), on the host port DRYBEANS_GRPC_HOST_PORT."""
    require(shutil.which("docker-compose") is not None, "docker-compose (tests/container/start_dockerd.sh)")
    assert published() == ({("127.0.0.1", 3000, API_PORT), ("127.0.0.1", 3002, GRPC_PORT)}, str(GRPC_PORT))
    ports, _ = published(bind="0.0.0.0", grpc_host_port="4002")
    assert ports == {("0.0.0.0", 3000, API_PORT), ("0.0.0.0", 4002, GRPC_PORT)}


@pytest.fixture(scope="session")  # session: checked before the session-scoped model is trained
def docker_env() -> dict[str, str]:
    """The environment for docker commands against an engine that answers."""
    host = harness.docker_host()
    require(host is not None and shutil.which("docker-compose") is not None,
            "a Docker engine and docker-compose (tests/container/start_dockerd.sh)")
    assert host is not None
    return harness.build_env(host)


@pytest.fixture(scope="module")
def images(docker_env: dict[str, str], trained_model_home: Path) -> dict[str, str]:
    """DRYBEANS_IMAGE built from this repository, and MYSQL_IMAGE swapped for the local MariaDB stand-in."""
    host = docker_env["DOCKER_HOST"]
    harness.ensure_scaffold_image("build_mysql_image.sh", host)
    return {"DRYBEANS_IMAGE": harness.drybeans_image(trained_model_home, host), "MYSQL_IMAGE": harness.MYSQL_IMAGE}


@pytest.fixture()
def credentials() -> dict[str, str]:
    """Fresh values for every variable .env.example asks for."""
    return {"MYSQL_DB": "drybeans", "MYSQL_ROOT_PASSWORD": secrets.token_urlsafe(16),
            "DRYBEANS_MIGRATOR_DB_USER": "drybeans_migrator",
            "DRYBEANS_MIGRATOR_DB_PASSWORD": secrets.token_urlsafe(16),
            "DRYBEANS_APP_DB_USER": "drybeans_app", "DRYBEANS_APP_DB_PASSWORD": secrets.token_urlsafe(16),
            "DRYBEANS_API_TOKEN": secrets.token_urlsafe(24)}


def test_compose_refuses_to_start_without_a_token(docker_env: dict[str, str], credentials: dict[str, str],
                                                  tmp_path: Path) -> None:
    """Without DRYBEANS_API_TOKEN (unset or empty), `up` stops before creating anything and says what to set."""
    project = f"drybeans-test-{secrets.token_hex(4)}"
    for token in (None, ""):
        values = {**credentials, "DRYBEANS_API_TOKEN": token}
        env_file = tmp_path / ".env"
        env_file.write_text("".join(f"{name}={value}\n" for name, value in values.items() if value is not None))
        result = subprocess.run(["docker-compose", "--file", str(COMPOSE_FILE), "--env-file", str(env_file),
                                 "--project-name", project, "up", "-d"],
                                env=docker_env, capture_output=True, text=True, timeout=COMPOSE_TIMEOUT_SECONDS,
                                check=False)
        assert result.returncode != 0
        assert "set DRYBEANS_API_TOKEN in .env" in result.stderr
        created = harness.run(["docker", "ps", "--all", "--quiet", "--filter",
                               f"label=com.docker.compose.project={project}"], env=docker_env)
        assert created.strip() == ""


@pytest.fixture()
def compose(images: dict[str, str], credentials: dict[str, str], docker_env: dict[str, str],
            tmp_path: Path) -> Iterator[Compose]:
    """docker-compose on an isolated project with its own env file and port; `down -v` after."""
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in credentials.items()))
    port, grpc_port = harness.free_port(), harness.free_port()
    env = {**docker_env, **images, "DRYBEANS_PORT": str(port), "DRYBEANS_GRPC_HOST_PORT": str(grpc_port)}
    base = ["docker-compose", "--file", str(COMPOSE_FILE), "--env-file", str(env_file),
            "--project-name", f"drybeans-test-{secrets.token_hex(4)}"]
    try:
        yield Compose(base, env, port, grpc_port)
    finally:
        logs = subprocess.run([*base, "logs", "--no-color", "--tail=40"], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        print(logs.stdout, logs.stderr)  # shown by pytest when the test failed
        subprocess.run([*base, "down", "--volumes", "--remove-orphans", "--timeout=20"], env=env,
                       capture_output=True, timeout=COMPOSE_TIMEOUT_SECONDS, check=False)


def health(compose: Compose, service: str, docker_env: dict[str, str]) -> str:
    """The Docker health status of a Compose service's container ('' when it has none yet)."""
    container_id = compose("ps", "-q", service).strip()
    if not container_id:
        return ""
    return harness.run(["docker", "inspect", "--format={{if .State.Health}}{{.State.Health.Status}}{{end}}",
                        container_id], env=docker_env).strip()


def up_and_healthy(compose: Compose, docker_env: dict[str, str]) -> None:
    """`up -d`, then wait until the app's healthcheck (/readyz) passes."""
    compose("up", "-d")
    harness.wait_until(lambda: health(compose, "app", docker_env) == "healthy", HEALTHY_TIMEOUT_SECONDS,
                       "the app service to become healthy", interval=3)


def recorded_names(compose: Compose, credentials: dict[str, str]) -> list[str]:
    """The `name` column of the predictions table, read as root inside the mysql service."""
    query = f"SELECT name FROM `{credentials['MYSQL_DB']}`.drybeans ORDER BY 1"
    out = compose("exec", "-T", "mysql", "mysql", "-h127.0.0.1", "-uroot",
                  f"-p{credentials['MYSQL_ROOT_PASSWORD']}", "--batch", "--skip-column-names", "-e", query)
    return out.split()


def predict(compose: Compose, token: str | None) -> httpx.Response:
    """The tutorial's request to the published app port, with the bearer token unless None."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"http://127.0.0.1:{compose.port}/predict", json=harness.TUTORIAL_REQUEST, headers=headers,
                      timeout=30)


def grpc_health(compose: Compose) -> int:
    """grpc.health.v1 Check of the whole server through the published gRPC port: its status."""
    with grpc.insecure_channel(f"127.0.0.1:{compose.grpc_port}") as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        return int(response.status)


def grpc_infer_status(compose: Compose, token: str | None) -> grpc.StatusCode:
    """The status of an empty V2 ModelInfer through the published gRPC port, with the bearer token unless None.

    Sent as raw bytes (b"" is the empty message): this process must not import the V2 stubs (see the brief on
    descriptor clashes). The token is checked first; with it, the empty request names no model: NOT_FOUND."""
    metadata = [("authorization", f"Bearer {token}")] if token is not None else []
    with grpc.insecure_channel(f"127.0.0.1:{compose.grpc_port}") as channel:
        try:
            channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(b"", metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_compose_predicts_and_keeps_rows_across_down_and_up(compose: Compose, credentials: dict[str, str],
                                                            docker_env: dict[str, str]) -> None:
    """Migrate runs once and exits 0, the app predicts and records, and the row survives `down` then `up`."""
    up_and_healthy(compose, docker_env)
    migrate_id = compose("ps", "-q", "migrate").strip()
    exit_code = harness.run(["docker", "inspect", "--format={{.State.ExitCode}}", migrate_id], env=docker_env)
    assert exit_code.strip() == "0"
    assert predict(compose, None).status_code == 401, "predictions need the token"
    response = predict(compose, credentials["DRYBEANS_API_TOKEN"])
    assert response.status_code == 200, response.text
    assert response.json() == harness.TUTORIAL_ANSWER
    assert recorded_names(compose, credentials) == ["DERMASON"]

    # V2 over gRPC on its published port, on loopback only, under the same token as /predict (issue #20).
    assert compose("port", "app", str(GRPC_PORT)).strip() == f"127.0.0.1:{compose.grpc_port}"
    assert grpc_health(compose) == health_pb2.HealthCheckResponse.SERVING
    assert grpc_infer_status(compose, None) == grpc.StatusCode.UNAUTHENTICATED, "predictions need the token"
    assert grpc_infer_status(compose, credentials["DRYBEANS_API_TOKEN"]) == grpc.StatusCode.NOT_FOUND
    assert recorded_names(compose, credentials) == ["DERMASON"]

    compose("down", "--timeout=20")
    up_and_healthy(compose, docker_env)
    assert recorded_names(compose, credentials) == ["DERMASON"]
    assert predict(compose, credentials["DRYBEANS_API_TOKEN"]).status_code == 200
    assert recorded_names(compose, credentials) == ["DERMASON", "DERMASON"]


def test_app_user_has_only_select_and_insert(compose: Compose, credentials: dict[str, str],
                                             docker_env: dict[str, str]) -> None:
    """The app's MySQL user holds SELECT, INSERT on its four tables (predictions, feedback, the models' roles and the
    second opinions) and nothing else."""
    up_and_healthy(compose, docker_env)
    grants = compose("exec", "-T", "mysql", "mysql", "-h127.0.0.1", f"-u{credentials['DRYBEANS_APP_DB_USER']}",
                     f"-p{credentials['DRYBEANS_APP_DB_PASSWORD']}", "--batch", "--skip-column-names",
                     "-e", "SHOW GRANTS")
    privileges = [line for line in grants.splitlines() if not line.startswith("GRANT USAGE ON *.*")]
    tables = ("drybeans", "feedback", "model_roles", "shadow_predictions")
    assert len(privileges) == len(tables), grants
    for privilege, table in zip(sorted(privileges), tables, strict=True):
        assert privilege.startswith(f"GRANT SELECT, INSERT ON `{credentials['MYSQL_DB']}`.`{table}` TO ")

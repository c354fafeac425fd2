"""Real components for the tests: a fresh MySQL database on the local server, and `bentoml serve` processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from tests.support import require_tier

ROOT = Path(__file__).resolve().parents[1]
# The MySQL-compatible server the tests use: MariaDB on 127.0.0.1:3306 here (root, empty password).
MYSQL_ADMIN_URL = make_url(os.environ.get("DRYBEANS_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/"))
BENTOML = Path(sys.executable).with_name("bentoml")


def mysql_available() -> bool:
    """Whether the test MySQL server answers."""
    try:
        with create_engine(MYSQL_ADMIN_URL, connect_args={"connect_timeout": 3}).connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError:
        return False
    return True


@dataclass(frozen=True)
class MySQLDatabase:
    """A throwaway database on the test server."""

    url: URL

    @property
    def env(self) -> dict[str, str]:
        """The tutorial's variables pointing at this database."""
        return {"MYSQL_HOST": self.url.host or "", "MYSQL_PORT": str(self.url.port or 3306),
                "MYSQL_USER": self.url.username or "", "MYSQL_PASSWORD": self.url.password or "",
                "MYSQL_DB": self.url.database or ""}

    def engine(self) -> Engine:
        """An engine on this database."""
        return create_engine(self.url)


@contextmanager
def mysql_database() -> Iterator[MySQLDatabase]:
    """Create a uniquely named database, drop it afterwards."""
    require_tier("MariaDB")
    name = f"drybeans_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(MYSQL_ADMIN_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    try:
        yield MySQLDatabase(MYSQL_ADMIN_URL.set(database=name, query={"charset": "utf8mb4"}))
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


# The tutorial's own DDL for its table.
TUTORIAL_TABLE = """CREATE TABLE IF NOT EXISTS drybeans (
    id INT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"""


def make_tutorial_era(database: MySQLDatabase, names: list[str]) -> None:
    """Leave `database` as the tutorial's app would: its table, no schema version, rows named `names`."""
    with database.engine().begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS feedback"))  # its foreign key names drybeans
        connection.execute(text("DROP TABLE IF EXISTS drybeans"))
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
        connection.execute(text(TUTORIAL_TABLE))
        connection.execute(text("INSERT INTO drybeans (name) VALUES " + ", ".join(f"('{n}')" for n in names)))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `bentoml serve` of this project."""

    url: str
    process: subprocess.Popen[str]
    log: Path

    def client(self, **kwargs: object) -> httpx.Client:
        """An HTTP client for this server."""
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)  # type: ignore[arg-type]

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(errors="replace")


@contextmanager
def bentoml_serve(env: dict[str, str], log_dir: Path, *, ready_timeout: float = 90,
                  expect_ready: bool = True) -> Iterator[Server]:
    """Start `bentoml serve` from the project root on a free port; stop it with SIGTERM afterwards."""
    require_tier("a server process")
    port = free_port()
    log = log_dir / f"bentoml-serve-{port}.log"
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "DRYBEANS_SPOOL_DIR": str(log_dir / "spool"), **env}
    with log.open("w") as out:
        process = subprocess.Popen([str(BENTOML), "serve", "--port", str(port), "--host", "127.0.0.1"],
                                   cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_until_up(server, ready_timeout, "/readyz" if expect_ready else "/livez")
        yield server
    finally:
        _stop(process)


def _wait_until_up(server: Server, timeout: float, probe: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None or "Application startup failed" in server.output():
            raise RuntimeError(f"bentoml serve failed to start:\n{server.output()[-3000:]}")
        try:
            if httpx.get(server.url + probe, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{server.url}{probe} not 200 within {timeout} s:\n{server.output()[-3000:]}")


def worker_pids(process: subprocess.Popen[str]) -> list[int]:
    """The worker processes of a `bentoml serve` (its children; each runs in a process group of its own)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == process.pid and fields[0] != "Z":  # a killed worker lingers as a zombie
            children.append(int(stat.parent.name))
    return sorted(children)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    workers = worker_pids(process)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        for pid in [process.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(10)

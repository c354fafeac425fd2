"""Credentials and privileges: passwords come only from the environment and never show; the service's MySQL user
can read and insert predictions and nothing more; all SQL is parameterised."""

from __future__ import annotations

import ast
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pymysql
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from api.schemas import EXAMPLE_BEAN, EXAMPLE_ROW
from tests.bad_requests import CORPUS
from tests.servers import BENTOML, MYSQL_ADMIN_URL, ROOT, MySQLDatabase, Server, bentoml_serve, free_port

pytestmark = pytest.mark.system

TABLE_ACCESS_DENIED = 1142  # ER_TABLEACCESS_DENIED_ERROR: "<command> command denied to user ... for table ..."
DATABASE_ACCESS_DENIED = 1044  # ER_DBACCESS_DENIED_ERROR: "Access denied for user ... to database ..."
REVIEWED_DYNAMIC_SQL = {
    ("db/migrate.py", "grant_app_user"),  # identifiers, checked against a pattern first
    ("db/store.py", "_insert_as_literals"),  # values escaped by the driver, ints and floats: test_writer.py's
                                          # test_every_value_is_stored_exactly... stores an injection attempt as given
    ("rollout/shadow.py", "_insert_as_literals"),  # the same: strings escaped by the driver, `:d` ints, repr(float)
}
SQL_CALLS = {"text", "execute", "exec_driver_sql", "executemany", "scalar", "scalars"}


@dataclass(frozen=True)
class DatabaseUser:
    """A MySQL user of the test server, created for this module."""

    name: str
    password: str


@dataclass(frozen=True)
class Accounts:
    """The migrator (ALL on the database, WITH GRANT OPTION) and the service's user (no privileges of its own)."""

    database: MySQLDatabase
    migrator: DatabaseUser
    app: DatabaseUser

    def env(self, user: DatabaseUser) -> dict[str, str]:
        """The tutorial's variables for connecting as `user`."""
        return {**self.database.env, "MYSQL_USER": user.name, "MYSQL_PASSWORD": user.password}

    def engine(self, user: DatabaseUser) -> Engine:
        """An engine connecting as `user`."""
        return create_engine(self.database.url.set(username=user.name, password=user.password))


def new_user(role: str) -> DatabaseUser:
    """A unique user name and a random password that cannot occur in any output by chance."""
    return DatabaseUser(f"drybeans_{role}_{uuid.uuid4().hex[:8]}", f"pw-{secrets.token_hex(16)}")


def admin() -> Engine:
    """The test server's administrator."""
    return create_engine(MYSQL_ADMIN_URL)


@pytest.fixture(scope="module")
def accounts(mysql_db: MySQLDatabase) -> Iterator[Accounts]:
    """The two users on the module's fresh database; dropped afterwards."""
    created = Accounts(mysql_db, new_user("migrator"), new_user("app"))
    database = mysql_db.url.database
    with admin().begin() as connection:
        for user in (created.migrator, created.app):
            connection.execute(text(f"CREATE USER '{user.name}'@'%' IDENTIFIED BY :password"),
                               {"password": user.password})
        connection.execute(text(f"GRANT ALL ON `{database}`.* TO '{created.migrator.name}'@'%' WITH GRANT OPTION"))
    try:
        yield created
    finally:
        with admin().begin() as connection:
            for user in (created.migrator, created.app):
                connection.execute(text(f"DROP USER IF EXISTS '{user.name}'@'%'"))


def run_migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m db.migrate` from the project root with `env` added to the environment."""
    return subprocess.run([sys.executable, "-m", "db.migrate"], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def migration(accounts: Accounts) -> subprocess.CompletedProcess[str]:
    """The schema migrated by the migrator, who grants the app user its privileges."""
    result = run_migrate({**accounts.env(accounts.migrator), "DRYBEANS_APP_DB_USER": accounts.app.name})
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def app_server(trained_model_home: Path, accounts: Accounts, migration: subprocess.CompletedProcess[str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service as the app user, not migrating at start-up."""
    env = {**accounts.env(accounts.app), "DRYBEANS_MIGRATE_ON_STARTUP": "false",
           "DRYBEANS_SPOOL_DIR": str(tmp_path_factory.mktemp("spool"))}
    with bentoml_serve(env, tmp_path_factory.mktemp("logs")) as running:
        yield running


def answers_to_everything(server: Server) -> list[str]:
    """The bodies of every read endpoint, the docs, the metrics, a stored prediction and the whole bad corpus."""
    with server.client() as http:
        bodies = [http.get(path).text for path in ("/readyz", "/livez", "/docs.json", "/metrics", "/v1/predictions",
                                                   "/v1/predictions/counts")]
        bodies.append(http.post("/predict", json={"data": [EXAMPLE_ROW]}).text)
    for case in CORPUS:
        with server.client() as http:
            bodies.append(http.request(**case.request()).text)
    return bodies


def assert_never_shown(password: str, *outputs: str) -> None:
    """`password` occurs in none of `outputs`."""
    assert [output[:200] for output in outputs if password in output] == []


def test_migrate_output_never_shows_the_password(accounts: Accounts,
                                                 migration: subprocess.CompletedProcess[str]) -> None:
    assert (f"granted SELECT, INSERT on drybeans, feedback, model_roles, shadow_predictions to {accounts.app.name}"
            in migration.stdout)
    assert_never_shown(accounts.migrator.password, migration.stdout, migration.stderr)
    wrong_password = f"pw-{secrets.token_hex(16)}"
    refused = run_migrate({**accounts.env(accounts.migrator), "MYSQL_PASSWORD": wrong_password})
    assert refused.returncode != 0 and "Access denied" in refused.stderr
    assert_never_shown(wrong_password, refused.stdout, refused.stderr)


def test_the_app_user_is_granted_select_and_insert_on_its_four_tables_only(accounts: Accounts,
                                                                         migration: object) -> None:
    with admin().connect() as connection:
        grants = connection.scalars(text(f"SHOW GRANTS FOR '{accounts.app.name}'@'%'")).all()
    assert sorted(grant for grant in grants if not grant.startswith("GRANT USAGE ON *.*")) == [
        f"GRANT SELECT, INSERT ON `{accounts.database.url.database}`.`{table}` TO `{accounts.app.name}`@`%`"
        for table in ("drybeans", "feedback", "model_roles", "shadow_predictions")]


def test_the_service_as_the_app_user_stores_and_reads_back_predictions(app_server: Server) -> None:
    stored = httpx.post(f"{app_server.url}/v1/classify", json={"beans": [EXAMPLE_BEAN] * 2}).json()
    assert stored["stored"] == "committed"
    ids = [prediction["record_id"] for prediction in stored["predictions"]]
    page = httpx.get(f"{app_server.url}/v1/predictions", params={"limit": 2}).json()
    assert sorted(item["id"] for item in page["items"]) == sorted(ids)
    assert {item["request_id"] for item in page["items"]} == {stored["request_id"]}
    assert httpx.get(f"{app_server.url}/v1/predictions/counts").json()["counts"]["DERMASON"] >= 2


@pytest.mark.parametrize(("statement", "errno"), [
    pytest.param("UPDATE drybeans SET name = 'SIRA'", TABLE_ACCESS_DENIED, id="update"),
    pytest.param("DELETE FROM drybeans", TABLE_ACCESS_DENIED, id="delete"),
    pytest.param("TRUNCATE TABLE drybeans", TABLE_ACCESS_DENIED, id="truncate"),
    pytest.param("DROP TABLE drybeans", TABLE_ACCESS_DENIED, id="drop"),
    pytest.param("ALTER TABLE drybeans ADD COLUMN note TEXT", TABLE_ACCESS_DENIED, id="alter"),
    pytest.param("CREATE TABLE notes (id INT)", TABLE_ACCESS_DENIED, id="create-table"),
    pytest.param("SELECT * FROM alembic_version", TABLE_ACCESS_DENIED, id="read-alembic-version"),
    pytest.param("SELECT * FROM mysql.user", TABLE_ACCESS_DENIED, id="read-mysql-user"),
    pytest.param("CREATE DATABASE drybeans_intruder", DATABASE_ACCESS_DENIED, id="create-database"),
])
def test_the_app_user_cannot_change_drop_or_read_anything_else(accounts: Accounts, migration: object,
                                                               statement: str, errno: int) -> None:
    connection = pymysql.connect(host=accounts.database.url.host, port=accounts.database.url.port or 3306,
                                 user=accounts.app.name, password=accounts.app.password,
                                 database=accounts.database.url.database)
    with connection, pytest.raises(pymysql.err.OperationalError) as denied:
        connection.cursor().execute(statement)
    assert denied.value.args[0] == errno, denied.value.args


def test_the_password_never_shows_in_logs_docs_metrics_or_any_answer(accounts: Accounts, app_server: Server) -> None:
    bodies = answers_to_everything(app_server)
    assert_never_shown(accounts.app.password, app_server.output(), *bodies)


def wait_until_database_down(server: Server, timeout: float = 30) -> None:
    """Poll /readyz until it reports the database down (the server has noticed its database refuses it)."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{server.url}/readyz").json()["database"] != "down":
        assert time.monotonic() < deadline, f"{server.url}/readyz still reports the database up after {timeout} s"
        time.sleep(0.2)


@contextmanager
def password_changed(user: DatabaseUser) -> Iterator[None]:
    """Until exit, the server refuses the user's password: it is changed, and the user's connections are cut."""
    set_password = text(f"ALTER USER '{user.name}'@'%' IDENTIFIED BY :password")
    with admin().begin() as connection:
        connection.execute(set_password, {"password": f"pw-{secrets.token_hex(16)}"})
        sessions = connection.scalars(text("SELECT id FROM information_schema.processlist WHERE user = :name"),
                                      {"name": user.name}).all()
        for session in sessions:
            connection.execute(text(f"KILL CONNECTION {int(session)}"))
    try:
        yield
    finally:
        with admin().begin() as connection:
            connection.execute(set_password, {"password": user.password})


def test_the_password_never_shows_when_the_database_refuses_it(accounts: Accounts, app_server: Server) -> None:
    with password_changed(accounts.app):
        wait_until_database_down(app_server)
        bodies = answers_to_everything(app_server)
    assert_never_shown(accounts.app.password, app_server.output(), *bodies)
    assert "Access denied" in app_server.output()  # the wrong password was really tried and refused


@pytest.fixture(scope="module")
def down_server(trained_model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """The service with DATABASE_URL pointing at a port where no database listens, and the password it holds."""
    password = f"pw-{secrets.token_hex(16)}"
    url = URL.create("mysql+pymysql", "drybeans", password, "127.0.0.1", free_port(), "drybeans")
    env = {"DATABASE_URL": url.render_as_string(hide_password=False),
           "DRYBEANS_SPOOL_DIR": str(tmp_path_factory.mktemp("spool"))}
    with bentoml_serve(env, tmp_path_factory.mktemp("logs"), expect_ready=False) as running:
        yield running, password


def test_the_password_never_shows_when_the_database_is_down(down_server: tuple[Server, str]) -> None:
    server, password = down_server
    assert httpx.get(f"{server.url}/readyz").json()["database"] == "down"
    bodies = answers_to_everything(server)
    assert_never_shown(password, server.output(), *bodies)


def test_the_bento_holds_no_password_and_no_env_file(trained_model_home: Path, tmp_path: Path) -> None:
    password = f"pw-{secrets.token_hex(16)}"
    project = copy_of_the_project(tmp_path / "project")
    for env_file in (project / ".env", project / "deploy" / "compose" / ".env"):
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text(f"MYSQL_PASSWORD={password}\n")
    built = subprocess.run([str(BENTOML), "build", "--output", "tag"], cwd=project,
                           env={**os.environ, "MYSQL_PASSWORD": password, "DATABASE_URL": f"mysql://u:{password}@h/d"},
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    name, version = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:").split(":")
    bento = trained_model_home / "bentos" / name / version
    files = [path for path in bento.rglob("*") if path.is_file()]
    assert any(path.name == "service.py" for path in files)
    assert [str(path.relative_to(bento)) for path in files if path.name == ".env"] == []
    assert [str(path.relative_to(bento)) for path in files if password.encode() in path.read_bytes()] == []


def project_files() -> list[Path]:
    """The project's files as git sees them: tracked, or new but not ignored (relative to ROOT)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    return [Path(name) for name in listed.split("\0") if name and (ROOT / name).is_file()]


def copy_of_the_project(target: Path) -> Path:
    """The project's files copied to `target`."""
    for relative in project_files():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target / relative)
    return target


def test_all_sql_in_the_product_is_parameterised() -> None:
    dynamic = set()
    for path in product_sources():
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                dynamic |= {(str(path.relative_to(ROOT)), function.name) for call in ast.walk(function)
                            if is_sql_call_with_built_string(call)}
    assert dynamic == REVIEWED_DYNAMIC_SQL


def product_sources() -> list[Path]:
    """The project's Python files, tests left out."""
    return [ROOT / path for path in project_files() if path.suffix == ".py" and path.parts[0] != "tests"]


def is_sql_call_with_built_string(node: ast.AST) -> bool:
    """A call such as text(...) or execute(...) whose SQL is built from pieces rather than written whole."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    return name in SQL_CALLS and is_built_string(node.args[0])


def is_built_string(node: ast.expr) -> bool:
    """An f-string, a `%` or `+` expression, or a `.format()` call."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, ast.Mod | ast.Add)
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"

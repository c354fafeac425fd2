"""The tiers (every test has one: tests/support.py), and shared fixtures: the real dataset and train.py's split of
it, an isolated BentoML home, a model trained once per session, and one read-only server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.support import FIXTURE_NEEDS, NEEDS, TIERS, Split, note_tier

if TYPE_CHECKING:
    from tests.servers import MySQLDatabase, Server
    from tests.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DRYBEANS_SHARED_DATA", ROOT.parent / "shared" / "data"))
SHARED_CSV = SHARED_DATA / "Dry_Bean_Dataset.csv"
MODULE_TIER = re.compile(r"^pytestmark = pytest\.mark\.(\w+)$", re.MULTILINE)  # a tier for all of a module's tests

# Tests never write into the user's ~/bentoml: every process started from here inherits this home.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="drybeans-bentoml-")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


class Training:
    """`python train.py` run once, as a user runs it, into the session's BentoML home. It starts as soon as a test
    that will run is collected needing its model, and trains on the second core while the rest is collected."""

    def __init__(self) -> None:
        self.output = Path(tempfile.mkdtemp(prefix="drybeans-train-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start train.py, unless it was started already."""
        if self.process is not None:
            return
        env = {**os.environ, "DRYBEAN_DATA": str(SHARED_CSV)}
        with (self.output / "stdout").open("w") as out, (self.output / "stderr").open("w") as err:
            self.process = subprocess.Popen([sys.executable, "train.py", "--output", str(self.output / "reports")],
                                            cwd=ROOT, env=env, stdout=out, stderr=err)

    def result(self) -> subprocess.CompletedProcess[str]:
        """train.py's exit code and output once it is done; `args` is the folder its reports went to."""
        self.start()
        assert self.process is not None
        returncode = self.process.wait(timeout=300)
        return subprocess.CompletedProcess(self.output / "reports", returncode, (self.output / "stdout").read_text(),
                                           (self.output / "stderr").read_text())

    def stop(self) -> None:
        """End a run that no test waited for."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


TRAINING = Training()


def selected_tiers(config: pytest.Config) -> set[str] | None:
    """The tiers `-m` selects when it names only tiers ("fast", "fast or database"); None when it does not."""
    names = set(re.split(r"\s+or\s+", config.option.markexpr.strip()))
    return names if names <= set(TIERS) else None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under `-m` naming tiers, a module whose `pytestmark` gives all its tests another tier is not even imported."""
    tiers = selected_tiers(config)
    if tiers is None or not (collection_path.name.startswith("test_") and collection_path.suffix == ".py"):
        return None
    module_tier = MODULE_TIER.search(collection_path.read_text(encoding="utf-8"))
    return True if module_tier is not None and module_tier.group(1) not in tiers else None


def pytest_itemcollected(item: pytest.Item) -> None:
    """Start train.py as soon as a test that will run needs its model."""
    if "trained_model" not in getattr(item, "fixturenames", ()) or item.config.option.collectonly:
        return
    tiers = selected_tiers(item.config)
    if tiers is None or ({mark.name for mark in item.iter_markers()} & set(TIERS) or {"fast"}) & tiers:
        TRAINING.start()


def pytest_sessionfinish() -> None:
    """No train.py outlives the session (one started for tests that were then deselected)."""
    TRAINING.stop()


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by the tiers given here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each test its one tier (`fast` unless marked); refuse to run when a test has two, or a fixture it uses
    needs another."""
    problems = []
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
        if len(tiers) > 1:
            problems.append(f"{item.nodeid}: marked {' and '.join(tiers)}; a test has one tier")
            continue
        tier = tiers[0] if tiers else "fast"
        if not tiers:
            item.add_marker(tier)
        note_tier(item.nodeid, tier)
        for fixture in getattr(item, "fixturenames", ()):
            need = FIXTURE_NEEDS.get(fixture)
            if need is not None and tier not in NEEDS[need]:
                problems.append(f"{item.nodeid}: a {tier} test, but {fixture} needs {need}: mark it "
                                + " or ".join(NEEDS[need]))
    if problems:
        raise pytest.UsageError("tiers (tests/support.py):\n" + "\n".join(problems))


@pytest.fixture(scope="session")
def shared_csv() -> Path:
    """The tutorial's CSV from ../shared/data."""
    if not SHARED_CSV.is_file():
        pytest.fail(f"{SHARED_CSV} is missing: the tests need ../shared/data beside the repository")
    return SHARED_CSV


@pytest.fixture(scope="session")
def shared_arff(shared_csv: Path) -> Path:
    """The UCI archive's ARFF from ../shared/data."""
    return shared_csv.with_suffix(".arff")


@pytest.fixture(scope="session")
def trained_model(shared_csv: Path) -> subprocess.CompletedProcess[str]:
    """`python train.py`'s run (Training), once the model is saved; `args` is where the reports went."""
    result = TRAINING.result()
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="session")
def trained_model_home(trained_model: subprocess.CompletedProcess[str]) -> Path:
    """A BentoML home holding `drybean_svc:latest`."""
    return Path(os.environ["BENTOML_HOME"])


@pytest.fixture(scope="session")
def split(shared_csv: Path) -> Split:
    """train.py's split (model/training.py), made once; read-only, as every module shares it."""
    from sklearn.model_selection import train_test_split

    from data.readers import read_dataset
    from model.training import RANDOM_STATE, TEST_SIZE

    dataset = read_dataset(shared_csv)
    parts = train_test_split(dataset.features.to_numpy(), dataset.labels.to_numpy(), test_size=TEST_SIZE,
                             random_state=RANDOM_STATE)
    for part in parts:
        part.setflags(write=False)
    return Split(*parts)


@pytest.fixture(scope="session")
def holdout(split: Split) -> np.ndarray:
    """train.py's held-out beans."""
    return split.x_test


@pytest.fixture(scope="session")
def mysql_required() -> None:
    """Skip (locally) or fail (in CI) when no MySQL-compatible server answers."""
    from tests.servers import MYSQL_ADMIN_URL, mysql_available
    from tests.support import require

    require(mysql_available(), f"a MySQL-compatible server at {MYSQL_ADMIN_URL.render_as_string()}")


@pytest.fixture(scope="module")
def mysql_db(mysql_required: None) -> Iterator[MySQLDatabase]:
    """A fresh database on the test server for one test module."""
    from tests.servers import mysql_database

    with mysql_database() as database:
        yield database


@pytest.fixture(scope="session")
def shared_server(trained_model_home: Path, mysql_required: None,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `bentoml serve` (one worker, no access log) for the modules whose tests only read or predict with
    store: false. It records into a database of its own, and fails the session if anything was stored there."""
    from sqlalchemy import text

    from tests.servers import bentoml_serve, mysql_database

    one_worker = "services.drybeans.workers=1 services.drybeans.logging.access.enabled=false"
    with mysql_database() as database:
        with bentoml_serve({**database.env, "BENTOML_CONFIG_OPTIONS": one_worker},
                           tmp_path_factory.mktemp("shared-server")) as running:
            yield running
        engine = database.engine()
        with engine.connect() as connection:
            stored = connection.scalar(text("SELECT (SELECT COUNT(*) FROM drybeans) + (SELECT COUNT(*) FROM feedback)"))
        engine.dispose()
        if stored:
            pytest.fail(f"the shared read-only server stored {stored} row(s): a module that stores needs its own "
                        "server", pytrace=False)


@pytest.fixture
def proxied(mysql_db: MySQLDatabase) -> Iterator[tuple[TcpProxy, dict[str, str]]]:
    """A TCP proxy in front of the test MySQL server (to cut or freeze it), and the service's settings through it."""
    from tests.servers import MYSQL_ADMIN_URL
    from tests.tcp_proxy import tcp_proxy

    with tcp_proxy(MYSQL_ADMIN_URL.host or "127.0.0.1", MYSQL_ADMIN_URL.port or 3306) as proxy:
        yield proxy, {**mysql_db.env, "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(proxy.port)}

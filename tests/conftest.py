"""Shared fixtures: the real dataset, an isolated BentoML home and a model trained once per session."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from tests.servers import MySQLDatabase
    from tests.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DRYBEANS_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Tests never write into the user's ~/bentoml: every process started from here inherits this home.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="drybeans-bentoml-")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


@pytest.fixture(scope="session")
def shared_csv() -> Path:
    """The tutorial's CSV from ../shared/data."""
    path = SHARED_DATA / "Dry_Bean_Dataset.csv"
    if not path.is_file():
        pytest.fail(f"{path} is missing: the tests need ../shared/data beside the repository")
    return path


@pytest.fixture(scope="session")
def shared_arff(shared_csv: Path) -> Path:
    """The UCI archive's ARFF from ../shared/data."""
    return shared_csv.with_suffix(".arff")


@pytest.fixture(scope="session")
def trained_model(shared_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """Run `python train.py` once, as a user would, into the session's BentoML home."""
    output = tmp_path_factory.mktemp("train-output")
    env = {**os.environ, "DRYBEAN_DATA": str(shared_csv)}
    result = subprocess.run([sys.executable, "train.py", "--output", str(output)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    result.args = output  # type: ignore[assignment]  # where the reports went
    return result


@pytest.fixture(scope="session")
def trained_model_home(trained_model: subprocess.CompletedProcess[str]) -> Path:
    """A BentoML home holding `drybean_svc:latest`."""
    return Path(os.environ["BENTOML_HOME"])


@pytest.fixture(scope="session")
def holdout(shared_csv: Path) -> np.ndarray:
    """train.py's held-out beans, by its own split (model/training.py)."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from data.schema import FEATURES
    from model.training import RANDOM_STATE, TEST_SIZE

    frame = pd.read_csv(shared_csv)
    x, y = frame[list(FEATURES)].to_numpy(dtype=np.float64), frame["Class"].to_numpy()
    return np.asarray(train_test_split(x, y, test_size=TEST_SIZE, random_state=RANDOM_STATE)[1])


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


@pytest.fixture
def proxied(mysql_db: MySQLDatabase) -> Iterator[tuple[TcpProxy, dict[str, str]]]:
    """A TCP proxy in front of the test MySQL server (to cut or freeze it), and the service's settings through it."""
    from tests.servers import MYSQL_ADMIN_URL
    from tests.tcp_proxy import tcp_proxy

    with tcp_proxy(MYSQL_ADMIN_URL.host or "127.0.0.1", MYSQL_ADMIN_URL.port or 3306) as proxy:
        yield proxy, {**mysql_db.env, "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(proxy.port)}

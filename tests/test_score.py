"""score.py run as a user runs it: every input format scored as /predict labels it, locally and through --url; bad
rows refused with the service's reasons; a wrong header stopped; --store exactly once, through a database outage;
memory flat whatever the file's size."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from api import errors
from api.errors import MISSING_INPUTS
from batch.files import rejects_path
from batch.run import LOADING_READ_AHEAD_ROWS
from batch.scoring import MISSING_VALUE, PROBABILITY_COLUMNS
from data.schema import CLASSES, FEATURES
from tests.conftest import ROOT
from tests.servers import MySQLDatabase, Server
from tests.support import peak_rss
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.system

REQUEST_BEANS = 10_000
TRUST_COLUMNS = ["prediction_set", "needs_review", "consistent", "in_distribution"]
OUTPUT_FOR = {"csv": "parquet", "parquet": "csv", "jsonl": "jsonl", "arff": "csv", "zip": "parquet"}  # each written


def run_score(*args: str | Path, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python score.py ARGS` from the project root, as a user runs it."""
    return subprocess.run([sys.executable, "score.py", *map(str, args)], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)


def read_table(path: Path) -> pd.DataFrame:
    """An output file, by its extension."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def inputs(shared_csv: Path, shared_arff: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The dataset in every input format: the shared CSV and ARFF, and Parquet, JSON Lines and a UCI zip built
    from them."""
    folder = tmp_path_factory.mktemp("inputs")
    frame = pd.read_csv(shared_csv)
    frame.to_parquet(folder / "beans.parquet")
    frame.to_json(folder / "beans.jsonl", orient="records", lines=True, double_precision=15)
    with zipfile.ZipFile(folder / "beans.zip", "w") as archive:
        archive.write(shared_arff, "DryBeanDataset/Dry_Bean_Dataset.arff")
    return {"csv": shared_csv, "arff": shared_arff, "parquet": folder / "beans.parquet",
            "jsonl": folder / "beans.jsonl", "zip": folder / "beans.zip"}


@pytest.fixture(scope="module")
def server(shared_server: Server) -> Server:
    """The session's read-only server: this module only predicts through it, with store: false."""
    return shared_server


@pytest.fixture(scope="module")
def predict_labels(server: Server, shared_csv: Path) -> list[str]:
    """/predict's labels for the whole dataset, in requests of 10,000 beans, not stored."""
    rows = pd.read_csv(shared_csv)[list(FEATURES)].to_numpy().tolist()
    labels: list[str] = []
    with server.client() as http:
        for start in range(0, len(rows), REQUEST_BEANS):
            answer = http.post("/predict", json={"data": rows[start:start + REQUEST_BEANS], "store": False})
            assert answer.status_code == 200, answer.text
            labels += json.loads(answer.json()["predictions"])
    return labels


def assert_scored_like_predict(output: Path, source: pd.DataFrame, labels: list[str]) -> None:
    scored = read_table(output)
    assert list(scored.columns) == [*source.columns, "label", *PROBABILITY_COLUMNS, *TRUST_COLUMNS]
    assert scored["label"].astype(str).tolist() == labels
    # The ARFF holds more digits than the CSV (which keeps 10 significant ones): the same beans within that rounding.
    np.testing.assert_allclose(scored[list(FEATURES)].to_numpy(dtype=float), source[list(FEATURES)].to_numpy(),
                               rtol=1e-9, atol=1e-9)
    assert scored["Class"].astype(str).tolist() == source["Class"].tolist()
    np.testing.assert_allclose(scored[list(PROBABILITY_COLUMNS)].sum(axis=1), 1.0, rtol=1e-9)
    sets = scored["prediction_set"].fillna("").astype(str)
    assert all(set(text.split(",")) <= set(CLASSES) for text in sets if text)
    assert not rejects_path(output).exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl", "arff", "zip"])
@pytest.mark.parametrize("through", ["model", "url"])
def test_every_format_is_labelled_as_predict_labels_it(fmt: str, through: str, inputs: dict[str, Path],
                                                        shared_csv: Path, server: Server, predict_labels: list[str],
                                                        tmp_path: Path) -> None:
    output = tmp_path / f"scored.{OUTPUT_FOR[fmt]}"
    remote = ["--url", server.url] if through == "url" else []
    result = run_score(inputs[fmt], "--output", output, "--chunk", "5000", *remote)
    assert result.returncode == 0, result.stderr
    assert_scored_like_predict(output, pd.read_csv(shared_csv), predict_labels)
    assert "13,611 rows in" in result.stderr and "0 rows refused" in result.stderr


def test_bad_rows_go_to_the_rejects_file_with_the_services_reasons(shared_csv: Path, trained_model_home: Path,
                                                                    tmp_path: Path) -> None:
    lines = shared_csv.read_text().splitlines()
    header, good = lines[0], lines[1:6]
    bad = [good[0].replace(good[0].split(",")[0], "", 1),          # row 2: Area missing
           ",".join(["abc", *good[0].split(",")[1:]]),             # row 4: Area is text
           ",".join([good[0].split(",")[0], "inf", *good[0].split(",")[2:]])]  # row 6: Perimeter infinite
    source = tmp_path / "beans.csv"
    source.write_text("\n".join([header, good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3]]) + "\n")
    output = tmp_path / "scored.csv"
    result = run_score(source, "--output", output)
    assert result.returncode == 1, result.stderr
    assert len(read_table(output)) == 4 and "3 rows refused" in result.stderr
    rejects = read_table(rejects_path(output))
    assert rejects["reason"].tolist() == [
        MISSING_VALUE.format(row=2, feature="Area"),
        errors.NOT_A_NUMBER.format(row=4, feature="Area", value='"abc"'),
        errors.NOT_FINITE.format(row=6, feature="Perimeter", value="inf")]
    assert list(rejects.columns) == [*header.split(","), "reason"]


def test_text_far_into_a_csv_is_refused_by_row_as_near_its_start(shared_csv: Path, trained_model_home: Path,
                                                                  tmp_path: Path) -> None:
    """Arrow reads a clean CSV; from the block holding a value that is not a number, pandas reads the rest (the
    dataset's 13,611 rows are three of Arrow's blocks): every row still scored or refused once, in order."""
    lines = shared_csv.read_text().splitlines()
    bad_row = 12_000  # in the last block
    fields = lines[bad_row].split(",")
    lines[bad_row] = ",".join([fields[0], "n/a?", *fields[2:]])
    source, output, clean = tmp_path / "beans.csv", tmp_path / "scored.parquet", tmp_path / "clean.parquet"
    source.write_text("\n".join(lines) + "\n")
    result = run_score(source, "--output", output, "--chunk", "2000")
    assert result.returncode == 1, result.stderr
    rejects = read_table(rejects_path(output))
    assert rejects["reason"].tolist() == [errors.NOT_A_NUMBER.format(row=bad_row, feature="Perimeter",
                                                                     value='"n/a?"')]
    assert run_score(shared_csv, "--output", clean).returncode == 0
    expected = read_table(clean).drop(index=bad_row - 1).reset_index(drop=True)
    pd.testing.assert_frame_equal(read_table(output).reset_index(drop=True), expected, check_dtype=False)


def test_a_wrong_header_stops_at_once_with_the_services_message(shared_csv: Path, tmp_path: Path) -> None:
    source = tmp_path / "beans.csv"
    source.write_text(shared_csv.read_text().replace("ShapeFactor4", "ShapeFactor_4", 1))
    output = tmp_path / "scored.parquet"
    result = run_score(source, "--output", output)
    assert result.returncode == 2
    assert MISSING_INPUTS.format(names="'ShapeFactor4'") in result.stderr
    assert not output.exists() and not rejects_path(output).exists()


def test_a_missing_model_and_an_absent_service_have_their_exit_codes(shared_csv: Path, tmp_path: Path) -> None:
    missing = run_score(shared_csv, "--output", tmp_path / "a.csv", "--model", "drybean_svc:nosuchversion")
    assert missing.returncode == 3 and "no model 'drybean_svc:nosuchversion'" in missing.stderr
    absent = run_score(shared_csv, "--output", tmp_path / "b.csv", "--url", "http://127.0.0.1:9")
    assert absent.returncode == 5 and "cannot reach the service" in absent.stderr
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "b.csv").exists()


def stored_count(db: MySQLDatabase) -> tuple[int, int]:
    """Rows in the prediction table, and distinct (request_id, bean_index) among them."""
    with db.engine().connect() as connection:
        return tuple(connection.execute(text(  # type: ignore[return-value]
            "SELECT COUNT(*), COUNT(DISTINCT request_id, bean_index) FROM drybeans")).one())


def test_store_records_each_bean_once_with_its_flags(shared_csv: Path, mysql_db: MySQLDatabase,
                                                     trained_model_home: Path, tmp_path: Path) -> None:
    before, _ = stored_count(mysql_db) if _has_table(mysql_db) else (0, 0)
    output = tmp_path / "scored.parquet"
    result = run_score(shared_csv, "--output", output, "--store",
                       env={**mysql_db.env, "DRYBEANS_SPOOL_DIR": str(tmp_path / "spool")})
    assert result.returncode == 0, result.stderr
    assert "13,611 committed" in result.stderr
    rows, distinct = stored_count(mysql_db)
    assert rows - before == 13_611 and distinct == rows
    scored = read_table(output)
    with mysql_db.engine().connect() as connection:  # committed in parallel halves: compared as multisets
        stored = pd.read_sql(text("SELECT name, area, perimeter, consistent, in_distribution, needs_review "
                                  "FROM drybeans ORDER BY id DESC LIMIT 13611"), connection)
    flags = ["consistent", "in_distribution", "needs_review"]
    assert Counter(zip(stored["name"], stored["area"], stored["perimeter"], *(stored[f].astype(bool) for f in flags),
                       strict=True)) == Counter(zip(scored["label"].astype(str), scored["Area"], scored["Perimeter"],
                                                    *(scored[f] for f in flags), strict=True))
    assert scored["needs_review"].any() and not scored["needs_review"].all()


def test_a_database_outage_during_store_is_spooled_then_replayed_exactly_once(
        shared_csv: Path, proxied: tuple[TcpProxy, dict[str, str]], mysql_db: MySQLDatabase,
        trained_model_home: Path, tmp_path: Path) -> None:
    proxy, env = proxied
    source = tmp_path / "beans.parquet"
    pd.concat([pd.read_csv(shared_csv)] * 15, ignore_index=True).to_parquet(source)  # 204,165 beans
    before = stored_count(mysql_db)[0] if _has_table(mysql_db) else 0
    process = subprocess.Popen(
        [sys.executable, "score.py", str(source), "--output", str(tmp_path / "scored.csv"), "--store",
         "--chunk", "10000"], cwd=ROOT, env={**os.environ, **env, "DRYBEANS_SPOOL_DIR": str(tmp_path / "spool")},
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (_has_table(mysql_db) and stored_count(mysql_db)[0] > before):  # storing has begun: cut now
        assert time.monotonic() < deadline and process.poll() is None, "score.py stored nothing"
        time.sleep(0.2)
    proxy.cut()
    time.sleep(4)
    proxy.restore()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "spooled" in stderr.rsplit("stored:", 1)[1], stderr
    rows, distinct = stored_count(mysql_db)
    assert rows - before == 15 * 13_611 and distinct == rows


def _has_table(db: MySQLDatabase) -> bool:
    with db.engine().connect() as connection:
        return connection.execute(text("SHOW TABLES LIKE 'drybeans'")).first() is not None


def peak_rss_mb(*args: str | Path) -> float:
    """score.py's peak resident memory, in MB: its VmHWM, read until it exits. (Not wait4's ru_maxrss: that keeps
    the high-water mark of the pytest process the child was forked from, 900 MB late in a full run.)"""
    process = subprocess.Popen([sys.executable, "score.py", *map(str, args)], cwd=ROOT, stderr=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        with contextlib.suppress(LookupError, OSError):  # gone between poll() and the read
            peak = max(peak, peak_rss([process.pid]))
        time.sleep(0.05)
    _, errors = process.communicate()
    assert process.returncode == 0, errors
    return peak / 2**20


def test_memory_stays_flat_from_1_2m_to_2_4m_rows(shared_csv: Path, trained_model_home: Path,
                                                  tmp_path: Path) -> None:
    # Both past the warm-up (while the model loads, score.py parses up to LOADING_READ_AHEAD_ROWS ahead: a smaller
    # file is then held whole), so that the difference is what a larger file costs.
    assert LOADING_READ_AHEAD_ROWS < 1_200_000
    frame = pd.read_csv(shared_csv)
    peaks = {}
    for rows in (1_200_000, 2_400_000):
        source = tmp_path / f"{rows}.parquet"
        repeated = pd.concat([frame] * (rows // len(frame) + 1), ignore_index=True).iloc[:rows]
        repeated.to_parquet(source, row_group_size=50_000)
        del repeated
        peaks[rows] = peak_rss_mb(source, "--output", tmp_path / f"{rows}-scored.parquet", "--chunk", "50000")
    assert peaks[2_400_000] - peaks[1_200_000] < 50, peaks

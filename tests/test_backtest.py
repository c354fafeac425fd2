"""`python -m rollout.backtest` as a user runs it: real MariaDB, real models in the session's BentoML home.

The held-out beans of train.py's split are stored as the champion's predictions, two thirds of them with their
true variety reported; the backtest's answer must equal the comparison computed offline on the same beans with
scikit-learn's own predictions.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import bentoml
import numpy as np
import pytest
from sklearn.base import clone
from sqlalchemy import create_engine, text

from api import errors
from db import migrate
from db.feedback import FeedbackRecord, insert_feedback
from db.store import PredictionRecord, insert_predictions
from model import MODEL_NAME
from rollout import backtest
from rollout.compare import Comparison, compare, tally
from tests.servers import ROOT, MySQLDatabase, free_port, mysql_database
from tests.support import Split

pytestmark = pytest.mark.system

START = datetime(2026, 1, 1)  # bean i was predicted at START + i seconds
OTHER_MODEL = "other_svc:1"


class Beans:
    """The held-out beans as stored: features, the champion's answers, reported true varieties (or None)."""

    def __init__(self, x: np.ndarray, champion: np.ndarray, candidate: np.ndarray, truth: list[str | None]) -> None:
        self.x, self.champion, self.candidate, self.truth = x, champion, candidate, truth

    def expected(self, champion: str, challenger: str, part: slice = slice(None)) -> Comparison:
        """The comparison computed offline, on scikit-learn's labels."""
        return compare(tally(self.champion[part], self.candidate[part], self.truth[part]), min_count=30,
                       champion=champion, challenger=challenger)


@pytest.fixture(scope="module")
def models(trained_model_home: Path) -> tuple[str, object, bentoml.Model]:
    """The champion train.py saved: its tag, pipeline and store entry."""
    champion = bentoml.models.get(f"{MODEL_NAME}:latest")
    champion_pipeline = bentoml.sklearn.load_model(champion)
    return str(champion.tag), champion_pipeline, champion


@pytest.fixture(scope="module")
def stored(models, split: Split, mysql_db: MySQLDatabase) -> Iterator[tuple[Beans, str, str]]:
    """The stored beans, the champion's tag and a candidate's: the same pipeline at C=0.02, with the same metadata.

    The candidate is saved in the session's model store, where it becomes `drybean_svc:latest`: it is deleted
    afterwards, so that the champion is `latest` again for the modules after this one (their servers load it)."""
    champion_tag, champion_pipeline, champion = models
    x_train, x_test, y_train, y_test = split
    pipeline = clone(champion_pipeline).set_params(svc__C=0.02).fit(x_train, y_train)
    candidate = bentoml.sklearn.save_model(
        MODEL_NAME, pipeline, signatures={"predict": {"batchable": False}},
        metadata={**champion.info.metadata, "params": {"kernel": "linear", "C": 0.02, "scaler": "StandardScaler"}})
    beans = Beans(x_test, champion_pipeline.predict(x_test), pipeline.predict(x_test),
                  [str(y) if i % 3 else None for i, y in enumerate(y_test)])

    engine = create_engine(mysql_db.url, connect_args={"init_command": "SET time_zone = '+00:00'"})
    migrate.upgrade(engine)
    with engine.begin() as connection:
        # Older rows the backtest must leave out: tutorial-era rows without features, another model's.
        connection.execute(text("INSERT INTO drybeans (name) VALUES ('SIRA'), ('CALI')"))
        insert_predictions(connection, [PredictionRecord("f" * 32, i, "SIRA", OTHER_MODEL, START, tuple(x))
                                        for i, x in enumerate(x_test[:50])])
        insert_predictions(connection, [
            PredictionRecord(f"{i // 1000:032x}", i % 1000, str(label), champion_tag, START + timedelta(seconds=i),
                             tuple(x)) for i, (x, label) in enumerate(zip(x_test, beans.champion, strict=True))])
        ids = list(connection.scalars(text("SELECT id FROM drybeans WHERE model_tag = :tag ORDER BY id"),
                                      {"tag": champion_tag}))
        insert_feedback(connection, [FeedbackRecord(truth, START, record_id=id_)
                                     for id_, truth in zip(ids, beans.truth, strict=True) if truth is not None])
    engine.dispose()
    yield beans, champion_tag, str(candidate.tag)
    bentoml.models.delete(candidate.tag)
    assert str(bentoml.models.get(f"{MODEL_NAME}:latest").tag) == champion_tag


def run(env: dict[str, str], *args: str, stderr: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"} | env
    return subprocess.run([sys.executable, "-m", "rollout.backtest", *args], cwd=ROOT, env=environment,
                          stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=180, check=False)


def test_the_backtest_equals_the_offline_comparison(stored, mysql_db: MySQLDatabase) -> None:
    beans, champion, candidate = stored
    result = run(mysql_db.env, "--candidate", candidate, "--json")
    assert result.returncode == 0, result.stderr
    report = Comparison.model_validate_json(result.stdout)
    expected = beans.expected(champion, candidate)
    assert report == expected
    # Not a trivial comparison: the models disagree on some beans and the figures are computed.
    assert report.counts.scored == len(beans.x) == 4084 and report.counts.labelled == 2722
    assert 0.9 < report.agreement < 1 and report.mcnemar.b + report.mcnemar.c > 0
    assert report.champion.accuracy is not None and report.champion.accuracy > 0.9
    assert report.champion.accuracy != report.challenger.accuracy
    assert result.stderr.startswith(f"backtest: re-scored 4,084 beans of {champion} with {candidate} in ")


def test_chunks_give_the_same_answer_as_one(stored, mysql_db: MySQLDatabase) -> None:
    beans, champion, candidate = stored
    one = run(mysql_db.env, "--candidate", candidate, "--json", "--chunk", "100000")
    many = run(mysql_db.env, "--candidate", candidate, "--json", "--chunk", "97")  # 43 chunks, the last short
    assert one.returncode == many.returncode == 0, one.stderr + many.stderr
    assert one.stdout == many.stdout
    assert Comparison.model_validate_json(many.stdout) == beans.expected(champion, candidate)


def test_since_and_limit_select_the_newest_beans(stored, mysql_db: MySQLDatabase) -> None:
    beans, champion, candidate = stored
    since = run(mysql_db.env, "--candidate", candidate, "--json", "--since", "2026-01-01T01:16:40+01:00")
    assert since.returncode == 0, since.stderr
    assert Comparison.model_validate_json(since.stdout) == beans.expected(champion, candidate, slice(1000, None))
    newest = run(mysql_db.env, "--candidate", candidate, "--json", "--limit", "500", "--chunk", "128")
    assert newest.returncode == 0, newest.stderr
    assert Comparison.model_validate_json(newest.stdout) == beans.expected(champion, candidate, slice(-500, None))
    other = run(mysql_db.env, "--candidate", candidate, "--json", "--champion", OTHER_MODEL)
    assert other.returncode == 0, other.stderr
    report = Comparison.model_validate_json(other.stdout)
    assert (report.counts.scored, report.counts.labelled, report.champion.model) == (50, 0, OTHER_MODEL)
    assert report.verdict == "not enough labelled beans"


def test_the_table_and_the_progress_bar_on_a_terminal(stored, mysql_db: MySQLDatabase) -> None:
    beans, champion, candidate = stored
    controller, terminal = pty.openpty()
    # Made without a size, as some CI runners' and `kubectl exec -t`'s are: the bar must still be drawn.
    try:
        result = run(mysql_db.env, "--candidate", candidate, "--chunk", "1000", stderr=terminal)
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not data:
                break
            shown += data
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert result.returncode == 0
    bar = shown.decode()
    assert "backtest: 100%" in bar and "4084/4084" in bar and "beans/s]" in bar and "<00:00" in bar  # time left
    assert "re-scored" not in bar  # the bar instead of the summary line
    expected = beans.expected(champion, candidate)
    assert f"champion:   {champion}\nchallenger: {candidate}\n" in result.stdout
    assert f"agreement {expected.agreement:.4f}" in result.stdout
    assert f"accuracy{'':14}{expected.champion.accuracy:.4f}{'':6}{expected.challenger.accuracy:.4f}\n" in result.stdout
    assert f"McNemar: champion alone right {expected.mcnemar.b}, challenger alone right {expected.mcnemar.c}" \
        in result.stdout
    assert "DERMASON  " + "".join(f"{count:>10}" for count in expected.flips.counts[3]) in result.stdout


def test_an_unknown_or_unusable_candidate_names_what_the_store_holds(stored, mysql_db: MySQLDatabase) -> None:
    _, champion, candidate = stored
    unknown = run(mysql_db.env, "--candidate", "drybean_svc:nosuchversion")
    assert unknown.returncode == backtest.EXIT_CANDIDATE == 3
    holds = errors.UNKNOWN_CANDIDATE.format(tag="'drybean_svc:nosuchversion'", home=os.environ["BENTOML_HOME"],
                                            known="")
    assert unknown.stderr.startswith("error: " + holds)
    assert champion in unknown.stderr and candidate in unknown.stderr  # among other tests' models
    assert unknown.stdout == ""
    bare = bentoml.sklearn.save_model("bare_svc", clone(bentoml.sklearn.load_model(champion)), metadata={})
    unusable = run(mysql_db.env, "--candidate", str(bare.tag))
    assert unusable.returncode == 3
    assert unusable.stderr.startswith("error: " + errors.UNUSABLE_CANDIDATE.format(
        tag=bare.tag, reason=f"model {bare.tag} was trained with scikit-learn None"))


def test_an_unreachable_database_is_named_without_its_password(stored, mysql_db: MySQLDatabase) -> None:
    _, _, candidate = stored
    port = free_port()
    result = run({**mysql_db.env, "MYSQL_PORT": str(port), "MYSQL_PASSWORD": "s3cret-pw"}, "--candidate", candidate)
    assert result.returncode == backtest.EXIT_DATABASE == 4
    database = mysql_db.url.database
    assert result.stderr.startswith(f"error: cannot read the stored predictions from mysql+pymysql://root:***@"
                                    f"127.0.0.1:{port}/{database}?charset=utf8mb4: 2003 Can't connect to MySQL server")
    assert result.stderr.endswith("; check DATABASE_URL or MYSQL_HOST, MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD and "
                                  "MYSQL_DB\n")
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_no_stored_predictions(stored, mysql_db: MySQLDatabase) -> None:
    _, _, candidate = stored
    with mysql_database() as empty:
        engine = empty.engine()
        migrate.upgrade(engine)
        engine.dispose()
        result = run(empty.env, "--candidate", candidate)
    assert result.returncode == backtest.EXIT_NO_PREDICTIONS == 5
    assert result.stderr == "error: " + errors.NO_STORED_PREDICTIONS.format(
        filters="", url=f"mysql+pymysql://root@127.0.0.1:3306/{empty.url.database}?charset=utf8mb4") + "\n"
    result = run(mysql_db.env, "--candidate", candidate, "--champion", "drybean_svc:gone", "--since", "2026-01-01")
    assert result.returncode == 5
    assert " of model 'drybean_svc:gone' since 2026-01-01T00:00:00Z in " in result.stderr


def test_wrong_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in [(["--chunk", "0"], "'0' is not a positive whole number"),
                          (["--limit", "ten"], "'ten' is not a positive whole number"),
                          (["--since", "yesterday"], "'yesterday' is not an ISO 8601 time"),
                          ([], "the following arguments are required: --candidate")]:
        with pytest.raises(SystemExit) as exit_:  # argparse's own exit, in process: no model or database touched
            backtest.main((["--candidate", "drybean_svc:any"] if args else []) + args)
        assert exit_.value.code == 2 and message in capsys.readouterr().err, args

"""Challengers from train.py (issue #21, item 5): an RBF SVC, production beans with ground truth added to the
training part, the candidate compared with the champion on the same holdout, and serving a model that cannot
explain its labels.

Every run trains with the real train.py into a BentoML home of its own: the session's home keeps its linear
`drybean_svc:latest`, which the other modules serve.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
from bentoml._internal.models.model import ModelStore
from sqlalchemy import insert

from api.errors import CANNOT_EXPLAIN, CannotExplain
from api.schemas import EXAMPLE_BEAN
from db import migrate
from db.models import FEATURE_COLUMNS, Feedback, Prediction
from model.classifier import Classifier, NoExplanations
from model.compiled_svc import SklearnPredictor
from rollout.registry import Scored
from serving.answers import Answered, classify_answer, refuse_unexplainable
from serving.recording import Recorded
from tests.servers import MySQLDatabase, bentoml_serve, free_port
from tests.support import Split
from trust.assessment import assess

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    """One `python train.py` and where it wrote."""

    result: subprocess.CompletedProcess[str]
    output: Path

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads((self.output / "metrics.json").read_text())  # type: ignore[no-any-return]

    @property
    def saved(self) -> str:
        found = re.search(r"^saved (drybean_svc:\w+)$", self.result.stdout, re.MULTILINE)
        assert found, self.result.stdout + self.result.stderr
        return found.group(1)


def train(home: Path, output: Path, *options: str, env: dict[str, str] | None = None) -> Run:
    """Run train.py as a user would, into the BentoML home `home`."""
    environment = {**os.environ, "BENTOML_HOME": str(home), **(env or {})}
    result = subprocess.run([sys.executable, "train.py", "--output", str(output), *options], cwd=ROOT,
                            env=environment, capture_output=True, text=True, timeout=300, check=False)
    return Run(result, output)


def models_in(home: Path) -> ModelStore:
    return ModelStore(home / "models")


@dataclass(frozen=True)
class Store:
    """A model store where a linear champion was saved first, then an RBF C=10 challenger (--require-better)."""

    home: Path
    linear: Run
    rbf: Run


@pytest.fixture(scope="module")
def store(shared_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    home = tmp_path_factory.mktemp("challengers-home")
    data = ["--data", str(shared_csv)]
    linear = train(home, tmp_path_factory.mktemp("linear"), *data)
    assert linear.result.returncode == 0, linear.result.stderr
    rbf = train(home, tmp_path_factory.mktemp("rbf"), *data, "--kernel", "rbf", "--C", "10", "--require-better")
    assert rbf.result.returncode == 0, rbf.result.stderr
    return Store(home, linear, rbf)


def test_an_rbf_challenger_is_saved_with_its_kernel_c_and_holdout_accuracy(store: Store) -> None:
    metrics = store.rbf.metrics
    assert metrics["holdout_accuracy"] == pytest.approx(0.9356, abs=5e-5)  # the figure; linear: 0.9336
    assert metrics["holdout_beans"] == 4084 and metrics["training_beans"] == 9527
    model = bentoml.models.get(store.rbf.saved, _model_store=models_in(store.home))
    assert model.info.metadata["params"] == {"kernel": "rbf", "C": 10.0, "gamma": "scale",
                                             "scaler": "StandardScaler"}
    assert model.info.labels["algorithm"] == "rbf-svc"
    assert model.info.metadata["metrics"]["holdout_accuracy"] == metrics["holdout_accuracy"]


def test_the_served_rbf_model_labels_the_whole_holdout_as_scikit_learn(store: Store, split: Split) -> None:
    _, x_test, _, y_test = split
    model = bentoml.models.get(store.rbf.saved, _model_store=models_in(store.home))
    pipeline = bentoml.sklearn.load_model(model)
    classifier = Classifier.from_metadata(pipeline, str(model.tag), model.info.metadata)
    assert isinstance(classifier.predictor, SklearnPredictor) and not classifier.explains
    labels, scores = classifier.classify(x_test)
    assert np.array_equal(labels, pipeline.predict(x_test))
    assert np.mean(labels == y_test) == pytest.approx(store.rbf.metrics["holdout_accuracy"], rel=1e-12)
    probabilities = classifier.probabilities(scores)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert (np.asarray(classifier.classes)[probabilities.argmax(axis=1)] == labels).mean() > 0.998
    with pytest.raises(NoExplanations):
        classifier.explain(x_test[:3], labels[:3], scores[:3])


def test_the_gate_compares_the_candidate_with_the_champion_on_the_same_holdout(store: Store) -> None:
    assert "candidate 0.9336; no champion: no drybean_svc in the model store before this run\n" in (
        store.linear.result.stdout)
    line = f"candidate 0.9356 vs champion {store.linear.saved} 0.9336 on the same 4,084 holdout beans\n"
    assert line in store.rbf.result.stdout
    champion = store.rbf.metrics["champion"]
    assert champion["champion"] == store.linear.saved and champion["better"] is True
    assert champion["champion_accuracy"] == store.linear.metrics["holdout_accuracy"]
    assert champion["holdout_beans"] == 4084
    assert store.linear.metrics["champion"]["champion"] is None


def test_require_better_refuses_a_worse_candidate_and_saves_nothing(store: Store, shared_csv: Path,
                                                                   tmp_path: Path) -> None:
    before = {str(model.tag) for model in models_in(store.home).list("drybean_svc")}
    worse = train(store.home, tmp_path, "--data", str(shared_csv), "--require-better")  # linear, after the RBF
    assert worse.result.returncode == 1
    assert worse.result.stderr.strip() == (
        f"refused: candidate 0.9336 vs champion {store.rbf.saved} 0.9356 on the same 4,084 holdout beans: "
        "not better than the champion (--require-better); nothing saved")
    assert {str(model.tag) for model in models_in(store.home).list("drybean_svc")} == before
    assert worse.metrics["champion"]["better"] is False


def test_without_require_better_a_worse_candidate_is_saved_and_said_so(shared_csv: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    rbf = train(home, tmp_path / "rbf", "--data", str(shared_csv), "--kernel", "rbf", "--C", "10")
    linear = train(home, tmp_path / "linear", "--data", str(shared_csv))
    assert linear.result.returncode == 0, linear.result.stderr
    assert f"candidate 0.9336 vs champion {rbf.saved} 0.9356 on the same 4,084 holdout beans\n" in (
        linear.result.stdout)
    assert linear.metrics["champion"]["better"] is False
    assert models_in(home).get("drybean_svc:latest").tag == bentoml.models.get(
        linear.saved, _model_store=models_in(home)).tag


@pytest.mark.parametrize(("value", "problem"), [("0", "0 is not a finite number above 0"),
                                                ("-1", "-1 is not a finite number above 0"),
                                                ("inf", "inf is not a finite number above 0"),
                                                ("ten", "'ten' is not a number")])
def test_a_c_that_is_not_a_positive_number_is_refused(value: str, problem: str, tmp_path: Path) -> None:
    run = train(tmp_path / "home", tmp_path, "--C", value)
    assert run.result.returncode == 2
    assert run.result.stderr.strip().endswith(f"argument --C: {problem}")


# --feedback

def record(database: MySQLDatabase, beans: np.ndarray, truths: list[str | None]) -> None:
    """Record `beans` as the service does, each with its reported true variety (None: not reported)."""
    request_id = uuid.uuid4().hex
    with database.engine().begin() as connection:
        for index, (bean, truth) in enumerate(zip(beans, truths, strict=True)):
            values = dict(zip(FEATURE_COLUMNS.values(), bean.tolist(), strict=True))
            id_ = connection.execute(insert(Prediction).values(name="SEKER", request_id=request_id, bean_index=index,
                                                               model_tag="drybean_svc:test", **values)
                                     ).inserted_primary_key[0]
            if truth is not None:
                connection.execute(insert(Feedback).values(record_id=id_, variety=truth))


@pytest.fixture(scope="module")
def feedback_db(mysql_db: MySQLDatabase) -> Iterator[MySQLDatabase]:
    """The test database with the service's schema."""
    engine = mysql_db.engine()
    migrate.upgrade(engine)
    engine.dispose()
    yield mysql_db


def test_feedback_beans_are_added_to_the_training_part_and_never_to_the_holdout(
        feedback_db: MySQLDatabase, split: Split, shared_csv: Path, tmp_path: Path) -> None:
    x_train, x_test, y_train, y_test = split
    data = ["--data", str(shared_csv), "--feedback"]
    none = train(tmp_path / "home", tmp_path / "none", *data, env=feedback_db.env)
    assert none.result.returncode == 0, none.result.stderr
    assert "feedback: 0 beans with a reported variety added to the training part\n" in none.result.stdout
    assert none.metrics["feedback"] == {"added": 0, "left_out_in_holdout": 0}
    assert none.metrics["training_beans"] == len(y_train)

    production = x_train[:40] * 1.001  # 40 new beans, near the training ones
    record(feedback_db, production, [str(truth) for truth in y_train[:40]])
    record(feedback_db, x_test[:5], [str(truth) for truth in y_test[:5]])  # holdout beans, reported: never trained on
    record(feedback_db, x_train[40:45] * 1.002, [None] * 5)  # recorded, no ground truth: not added
    with_feedback = train(tmp_path / "home", tmp_path / "with", *data, env=feedback_db.env)
    assert with_feedback.result.returncode == 0, with_feedback.result.stderr
    assert ("feedback: 40 beans with a reported variety added to the training part "
            "(5 identical to holdout beans left out)\n") in with_feedback.result.stdout
    metrics = with_feedback.metrics
    assert metrics["feedback"] == {"added": 40, "left_out_in_holdout": 5}
    assert metrics["training_beans"] == len(y_train) + 40
    # The holdout is the tutorial's split, bean for bean: the same size and the same varieties.
    assert metrics["holdout_beans"] == len(y_test) == np.sum(metrics["confusion_matrix"])
    assert {name: scores["support"] for name, scores in metrics["per_class"].items()} == Counter(y_test.tolist())
    model = bentoml.models.get(with_feedback.saved, _model_store=models_in(tmp_path / "home"))
    assert model.info.metadata["metrics"]["feedback"] == {"added": 40, "left_out_in_holdout": 5}
    assert model.info.metadata["reference"]["rows"] == len(y_train) + 40  # the drift reference: what it learnt


def test_feedback_from_a_database_that_is_down_stops_training(shared_csv: Path, tmp_path: Path) -> None:
    port = free_port()  # nobody listens there
    env = {"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(port), "MYSQL_USER": "root", "MYSQL_DB": "drybeans"}
    run = train(tmp_path / "home", tmp_path, "--data", str(shared_csv), "--feedback", env=env)
    assert run.result.returncode == 2
    error = run.result.stderr.strip()
    assert error.startswith(f"error: cannot read the feedback from mysql+pymysql://root@127.0.0.1:{port}/drybeans")
    assert "Connection refused" in error and error.endswith("or train without --feedback; nothing saved")
    assert not (tmp_path / "home" / "models" / "drybean_svc").exists()


def test_feedback_without_any_database_configured_says_so(shared_csv: Path, tmp_path: Path) -> None:
    env = {"DRYBEANS_SQLITE_PATH": str(tmp_path / "absent.sqlite3")}
    run = train(tmp_path / "home", tmp_path, "--data", str(shared_csv), "--feedback", env=env)
    assert run.result.returncode == 2
    assert "embedded database" in run.result.stderr and "does not exist" in run.result.stderr
    assert not (tmp_path / "absent.sqlite3").exists()  # not created by looking


# Serving the RBF challenger

def test_explanations_of_an_rbf_model_are_refused_with_what_to_do(store: Store, split: Split) -> None:
    model = bentoml.models.get(store.rbf.saved, _model_store=models_in(store.home))
    classifier = Classifier.from_metadata(bentoml.sklearn.load_model(model), str(model.tag), model.info.metadata)
    rows = split[1][:3]
    labels, scores = classifier.classify(rows)
    with pytest.raises(CannotExplain) as refused:
        refuse_unexplainable(classifier, explain=True)
    refuse_unexplainable(classifier, explain=False)
    assert (refused.value.status, refused.value.message) == (422, CANNOT_EXPLAIN.format(model=store.rbf.saved))
    answered = Answered(Scored(classifier, labels, scores, 0.001, "", None), Recorded("", "skipped"),
                        assess(classifier, rows, labels, classifier.probabilities(scores)))
    answer = json.loads(classify_answer(answered, explain=False))
    assert [bean["label"] for bean in answer["predictions"]] == labels.tolist()


def test_a_served_rbf_model_answers_everything_but_explanations(store: Store, tmp_path: Path) -> None:
    env = {"BENTOML_HOME": str(store.home), "DRYBEANS_SQLITE_PATH": str(tmp_path / "drybeans.sqlite3")}
    with bentoml_serve(env, tmp_path) as server, server.client() as http:
        refused = http.post("/v1/classify", json={"beans": [EXAMPLE_BEAN], "explain": True, "store": True})
        answered = http.post("/v1/classify", json={"beans": [EXAMPLE_BEAN], "store": False})
        recorded = http.get("/v1/predictions/counts").json()["total"]
    assert recorded == 0  # refused before anything was recorded
    assert refused.status_code == 422
    assert refused.json() == {"error": CANNOT_EXPLAIN.format(model=store.rbf.saved), "code": "cannot_explain"}
    assert answered.status_code == 200
    answer = answered.json()
    assert answer["model"] == store.rbf.saved
    [bean] = answer["predictions"]
    assert bean["label"] == "DERMASON" and "explanation" not in bean
    assert set(bean["scores"]) == set(bean["probabilities"]) and len(bean["scores"]) == 7
    assert sum(bean["probabilities"].values()) == pytest.approx(1.0)

"""Several models in one worker (issue #21): which model answers a request, what a failing canary costs the client
(nothing), and the second opinions recorded off the request's path, with real models and a real database."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, select

from data.readers import read_dataset
from db import migrate
from db.models import ShadowPrediction
from model.classifier import Classifier
from rollout.guard import ScoringStats
from rollout.registry import Models
from rollout.roles import Roles
from rollout.shadow import ShadowJob, ShadowScorer
from serving.client_keys import client_key


class Broken:
    """A predictor that raises, as a challenger's bug would."""

    def predict_with_scores(self, rows: Any) -> Any:
        raise RuntimeError("a challenger's bug")


@pytest.fixture(scope="module")
def champion(trained_model: subprocess.CompletedProcess[str]) -> Classifier:
    model = bentoml.models.get("drybean_svc:latest")
    classifier = Classifier.from_metadata(bentoml.sklearn.load_model(model), str(model.tag), model.info.metadata)
    return dataclasses.replace(classifier, tag="drybean_svc:champion")


@pytest.fixture(scope="module")
def rows(shared_csv: Path) -> np.ndarray:
    return read_dataset(shared_csv).features.to_numpy()[::100]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite+pysqlite:///{tmp_path / 'db.sqlite3'}")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@dataclasses.dataclass
class Counted:
    """drybeans_shadow_beans_total's counts, kept here."""

    beans: Counter[str] = dataclasses.field(default_factory=Counter)

    def __call__(self, result: str, beans: int) -> None:
        self.beans[result] += beans


def models_of(engine: Engine, champion: Classifier, roles: Roles, **others: Classifier) -> tuple[Models, Counted]:
    counted = Counted()
    classifiers = {"champion": champion, **{version: dataclasses.replace(classifier, tag=f"drybean_svc:{version}")
                                            for version, classifier in others.items()}}
    return Models(classifiers, roles, ShadowScorer(engine, 100, counted), ScoringStats()), counted


def test_the_champion_answers_and_a_canary_takes_its_share_by_key(engine: Engine, champion: Classifier,
                                                                  rows: np.ndarray) -> None:
    models, _ = models_of(engine, champion, Roles(champion="champion", canary="next", canary_share=0.2),
                          next=champion)
    chosen = Counter(models.choose(f"client-{i}").classifier.version for i in range(5_000))
    assert abs(chosen["next"] / 5_000 - 0.2) < 0.02
    assert {models.choose("lab-7").classifier.version for _ in range(50)} == {models.choose("lab-7").classifier.version}
    canary_choice = next(choice for i in range(100) if (choice := models.choose(f"c{i}")).classifier.version == "next")
    assert canary_choice.second_opinion is models.champion  # the champion scores the canary's beans too
    assert models.choose("anyone", version="champion").second_opinion is None  # a named version: no roles


def test_a_request_for_explanations_skips_a_canary_that_cannot_give_them(engine: Engine,
                                                                         champion: Classifier) -> None:
    models, _ = models_of(engine, champion, Roles(champion="champion", canary="rbf", canary_share=0.5),
                          rbf=dataclasses.replace(champion, explainer=None))
    assert {models.choose(f"k{i}", explain=True).classifier.version for i in range(200)} == {"champion"}


def test_a_canary_that_raises_costs_the_client_nothing(engine: Engine, champion: Classifier,
                                                       rows: np.ndarray) -> None:
    models, _ = models_of(engine, champion, Roles(champion="champion", canary="broken", canary_share=0.5),
                          broken=dataclasses.replace(champion, predictor=Broken()))
    choice = next(choice for i in range(100) if (choice := models.choose(f"c{i}")).classifier.version == "broken")
    scored = models.score(choice, rows)
    assert scored.classifier.version == "champion" and scored.second_opinion is None
    assert scored.labels.tolist() == champion.classify(rows)[0].tolist()
    assert models.stats.snapshot("drybean_svc:broken").errors == 1


def test_roles_naming_a_model_this_pod_lacks_keep_its_champion(engine: Engine, champion: Classifier) -> None:
    models, _ = models_of(engine, champion, Roles(champion="champion"), next=champion)
    models.apply(Roles(champion="elsewhere", shadow="gone", shadow_share=1.0, canary="next", canary_share=0.1,
                       revision=3))
    assert (models.roles.champion, models.roles.shadow, models.roles.canary, models.roles.revision) == (
        "champion", None, "next", 3)


def test_second_opinions_are_recorded_beside_the_answer(engine: Engine, champion: Classifier,
                                                       rows: np.ndarray) -> None:
    models, counted = models_of(engine, champion, Roles(champion="champion", shadow="next", shadow_share=1.0),
                                next=champion)
    scored = models.score(models.choose("k"), rows)
    models.ask_second_opinion(scored, rows)
    models.close(10)
    with engine.connect() as connection:
        stored = connection.execute(select(ShadowPrediction).order_by(ShadowPrediction.bean_index)).all()
    assert [(row.request_id, row.bean_index) for row in stored] == [(scored.request_id, i) for i in range(len(rows))]
    assert {(row.model_tag, row.answered_tag) for row in stored} == {("drybean_svc:next", "drybean_svc:champion")}
    assert [row.name for row in stored] == [row.answered_name for row in stored] == scored.labels.tolist()
    assert counted.beans == Counter(scored=len(rows))
    assert stored[0].seconds is not None  # the first job of a drain is timed alone: a latency sample


def test_a_drain_scores_each_models_jobs_in_one_call_and_times_one_alone(engine: Engine, champion: Classifier,
                                                                        rows: np.ndarray) -> None:
    counted = Counted()
    scorer = ShadowScorer(engine, 100, counted)
    labels = champion.classify(rows)[0]
    for i in range(20):
        scorer.submit(ShadowJob(f"r{i:02d}", rows, "drybean_svc:answered", labels, 0.001, champion))
    scorer.close(30)
    with engine.connect() as connection:
        stored = connection.execute(select(ShadowPrediction.request_id, ShadowPrediction.name,
                                           ShadowPrediction.seconds).order_by(ShadowPrediction.request_id,
                                                                              ShadowPrediction.bean_index)).all()
    assert len(stored) == 20 * len(rows)
    assert [name for request, name, _ in stored if request == "r07"] == labels.tolist()  # its own beans' labels
    timed = {request for request, _, seconds in stored if seconds is not None}
    assert 1 <= len(timed) < 20  # a sample: the first job of each drain


def test_a_failing_or_overwhelmed_shadow_never_stops_or_blocks(engine: Engine, champion: Classifier,
                                                               rows: np.ndarray) -> None:
    counted = Counted()
    scorer = ShadowScorer(engine, 2, counted)
    broken = dataclasses.replace(champion, predictor=Broken(), tag="drybean_svc:broken")
    labels = champion.classify(rows)[0]
    start = time.perf_counter()
    for i in range(200):
        scorer.submit(ShadowJob(f"r{i}", rows, champion.tag, labels, 0.001, broken if i == 0 else champion))
    assert time.perf_counter() - start < 0.5  # submitting never waits for the scorer
    scorer.close(30)
    assert counted.beans["failed"] == len(rows)
    assert counted.beans["dropped"] > 0
    assert counted.beans["scored"] + counted.beans["failed"] + counted.beans["dropped"] == 200 * len(rows)


def test_second_opinions_lost_to_a_database_outage_are_counted(champion: Classifier, rows: np.ndarray) -> None:
    counted = Counted()
    unreachable = create_engine("mysql+pymysql://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 1})
    scorer = ShadowScorer(unreachable, 10, counted)
    scorer.submit(ShadowJob("r", rows, champion.tag, champion.classify(rows)[0], 0.001, champion))
    scorer.close(30)
    assert counted.beans == Counter(scored=len(rows), lost=len(rows))


def test_client_keys_are_bounded() -> None:
    assert client_key(None) is None and client_key("") is None
    assert client_key(b"lab-7") == "lab-7"
    assert client_key("x" * 1000) == "x" * 256

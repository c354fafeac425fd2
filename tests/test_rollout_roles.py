"""The models' roles (issue #21): the transitions and their refusals, the stable hash that picks a canary's
requests, the append-only store with its revision check (SQLite and MariaDB), and the cache for a start while the
database is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event

from api import errors
from db import migrate
from rollout import roles, stored_roles
from rollout.roles import Roles
from rollout.sync import initial_roles, save_cache
from tests.servers import MySQLDatabase

START = Roles(champion="a")


def test_shadow_then_canary_then_promote_then_rollback() -> None:
    shadowed = roles.shadow(START, "b")
    assert (shadowed.shadow, shadowed.shadow_share, shadowed.role("b"), shadowed.role("c")) == ("b", 1.0, "shadow",
                                                                                                "idle")
    canaried = roles.canary(shadowed, "b", 0.2)  # a shadow becomes the canary: it leaves the shadow's place
    assert (canaried.shadow, canaried.canary, canaried.share("b")) == (None, "b", 0.2)
    promoted = roles.promote(canaried, "b", tried={"b"})
    assert (promoted.champion, promoted.previous_champion, promoted.canary) == ("b", "a", None)
    back = roles.rollback(promoted)
    assert (back.champion, back.previous_champion) == ("a", "b")
    assert roles.rollback(back).champion == "b"  # a second rollback undoes the first


def test_one_shadow_and_one_canary_at_a_time() -> None:
    both = roles.canary(roles.shadow(START, "b", 0.5), "c", 0.1)
    assert (both.shadow, both.canary) == ("b", "c")
    replaced = roles.shadow(both, "d")
    assert (replaced.shadow, replaced.canary, replaced.role("b")) == ("d", "c", "idle")
    assert roles.idle(replaced, "c").canary is None


@pytest.mark.parametrize("share", [0, -0.1, 0.51, 1.0, float("nan")])
def test_a_canary_share_outside_zero_to_half_is_refused(share: float) -> None:
    with pytest.raises(errors.InvalidShare, match=r"outside \(0, 0.5\]"):
        roles.canary(START, "b", share)


def test_refusals_say_what_to_do() -> None:
    with pytest.raises(errors.RoleConflict, match=r"never shadowed or canaried.*force: true"):
        roles.promote(START, "b", tried=set())
    assert roles.promote(START, "b", tried=set(), force=True).champion == "b"
    with pytest.raises(errors.RoleConflict, match="champion already"):
        roles.shadow(START, "a")
    with pytest.raises(errors.RoleConflict, match="no previous champion"):
        roles.rollback(START)


def test_the_canary_hash_is_stable_and_takes_its_share() -> None:
    keys = [f"client-{i}" for i in range(20_000)]
    chosen = [roles.in_bucket(key, 0.2, "canary") for key in keys]
    assert abs(sum(chosen) / len(keys) - 0.2) < 0.01
    assert chosen == [roles.in_bucket(key, 0.2, "canary") for key in keys]
    # Raising the share keeps every client that was in: a canary grows without moving anyone back.
    assert all(roles.in_bucket(key, 0.4, "canary") for key, inside in zip(keys, chosen, strict=True) if inside)
    # The shadow's hash is another one: a canary's clients are not also the shadow's.
    shadow = [roles.in_bucket(key, 0.2, "shadow") for key in keys]
    assert 0.02 < sum(a and b for a, b in zip(chosen, shadow, strict=True)) / len(keys) < 0.06


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite+pysqlite:///{tmp_path / 'roles.sqlite3'}")
    event.listen(engine, "connect", lambda connection, _: connection.execute("PRAGMA foreign_keys=ON"))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.database)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_engine")
        return
    database: MySQLDatabase = request.getfixturevalue("mysql_db")
    engine = database.engine()
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM model_roles")
    yield engine


def test_changes_are_appended_and_the_newest_is_in_force(engine: Engine) -> None:
    with engine.begin() as connection:
        assert stored_roles.current(connection) is None
        first = stored_roles.record(connection, roles.shadow(START, "b"), action="shadow", version="b",
                                    actor="release-bot", reason="try it")
        second = stored_roles.record(connection, roles.promote(first, "b", tried=stored_roles.tried(connection)),
                                     action="promote", version="b", actor="release-bot", reason="")
    with engine.connect() as connection:
        assert stored_roles.current(connection) == second
        assert (first.revision, second.revision) == (1, 2)
        assert [(row.revision, row.action, row.actor) for row in stored_roles.history(connection, 10)] == [
            (2, "promote", "release-bot"), (1, "shadow", "release-bot")]
        assert stored_roles.tried(connection) == {"b"}
        assert stored_roles.guard_rollbacks(connection) == 0


def test_two_changes_from_the_same_state_cannot_both_land(engine: Engine) -> None:
    with engine.begin() as connection:
        stored_roles.record(connection, roles.shadow(START, "b"), action="shadow", version="b", actor="one",
                            reason="")
    with pytest.raises(errors.RoleConflict, match="changed meanwhile"), engine.begin() as connection:
        stored_roles.record(connection, roles.canary(START, "c", 0.1), action="canary", version="c", actor="two",
                            reason="")
    with engine.connect() as connection:
        assert [row.actor for row in stored_roles.history(connection, 10)] == ["one"]


def test_a_start_during_an_outage_uses_the_last_roles_seen(sqlite_engine: Engine, tmp_path: Path) -> None:
    cache = tmp_path / "spool" / "roles.json"
    promoted = Roles(champion="b", previous_champion="a", revision=7)
    with sqlite_engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM model_roles")
    save_cache(cache, promoted)
    unreachable = create_engine("mysql+pymysql://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 1})
    assert initial_roles(unreachable, cache, START) == promoted
    assert initial_roles(unreachable, tmp_path / "absent.json", START) == START
    # The first start on a database stores its roles, so that an image bringing a newer model keeps this champion.
    first = initial_roles(sqlite_engine, cache, START)
    assert first == Roles(champion="a", revision=1)
    assert initial_roles(sqlite_engine, cache, Roles(champion="newer")) == first
    with sqlite_engine.connect() as connection:
        assert [(row.action, row.actor) for row in stored_roles.history(connection, 10)] == [("start", "service")]

"""The shadow scenario's levers and gauges (issue #21): put a shadow in force (or none) through the operator API, read
what became of the second opinions from /metrics, count the rows they left in `shadow_predictions`."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

ROLES_SETTLE_SECONDS = 3.0  # every worker reads the roles every 2 s (DRYBEANS_ROLES_POLL_SECONDS)
SETTLE_TIMEOUT_SECONDS = 30.0
SETTLE_POLL_SECONDS = 1.0  # longer than the shadow's flush interval (0.5 s): two equal reads mean stored
SECOND_OPINIONS = "drybeans_shadow_beans"  # rollout/shadow.py's counter, by result
RESULTS = ("scored", "dropped", "failed", "lost")
Value = TypeVar("Value")


def version_of(tag: str) -> str:
    """The version the operator API names a model by: drybean_svc:<version>."""
    return tag.partition(":")[2]


def put_in_force(url: str, tag: str | None, share: float) -> None:
    """Make `tag` the shadow for `share` of the requests (None: no shadow), then wait for every worker to read it."""
    shadowing = current_shadow(url)
    if tag is None:
        if shadowing is None:
            return
        _operate(url, f"/v1/models/{version_of(shadowing)}/idle", {"reason": "benchmark: no shadow"})
    else:
        _operate(url, f"/v1/models/{version_of(tag)}/shadow", {"share": share, "reason": "benchmark"})
    time.sleep(ROLES_SETTLE_SECONDS)


def current_shadow(url: str) -> str | None:
    """The tag of the model in shadow, per GET /v1/models."""
    answer = httpx.get(f"{url}/v1/models", timeout=30)
    answer.raise_for_status()
    return next((model["tag"] for model in answer.json()["models"] if model["role"] == "shadow"), None)


def _operate(url: str, path: str, body: dict[str, object]) -> None:
    answer = httpx.post(url + path, json=body, timeout=30)
    if not answer.is_success:
        raise RuntimeError(f"POST {path} answered {answer.status_code}: {answer.text[:500]}")


def second_opinions(url: str) -> dict[str, int]:
    """drybeans_shadow_beans_total by result, over every worker (BentoML's /metrics sums them)."""
    answer = httpx.get(f"{url}/metrics", timeout=30)
    answer.raise_for_status()
    counts = dict.fromkeys(RESULTS, 0)
    for family in text_string_to_metric_families(answer.text):
        if family.name == SECOND_OPINIONS:
            for sample in family.samples:
                if sample.name == f"{SECOND_OPINIONS}_total":
                    counts[sample.labels["result"]] = counts.get(sample.labels["result"], 0) + int(sample.value)
    return counts


def shadow_rows(engine: Engine) -> Counter[str]:
    """Rows of `shadow_predictions` by the tag of the model that scored them."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT model_tag, COUNT(*) FROM shadow_predictions GROUP BY model_tag"))
        return Counter({tag: int(count) for tag, count in rows})


def settled(read: Callable[[], Value]) -> Value:
    """`read()` once two reads in a row agree: the shadow's queue has drained and its last batch is stored
    (bounded wait; the last read when it never settles)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    previous = read()
    while time.monotonic() < deadline:
        time.sleep(SETTLE_POLL_SECONDS)
        current = read()
        if current == previous:
            return current
        previous = current
    return previous

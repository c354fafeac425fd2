"""Drift, accuracy (live and estimated) and coverage gauges for /metrics, computed in the background, never at
scrape time.

Each worker recomputes them every `monitoring_interval_seconds` over a fixed window (the newest `drift_window`
records by id, and as many newest feedback reports), so a scrape only formats numbers already known. Both
workers do the same bounded work on the same data and export the same values: whichever worker answers a scrape,
the figures agree (within one interval), and the doubled cost is a few bounded queries (and the re-scoring of a
window of beans, about a millisecond) per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api import errors
from config import get_settings
from monitoring import live
from monitoring.schemas import DriftReport, Figure
from serving.running import RunningService, service_if_started

logger = logging.getLogger("drybeans")


@dataclass(frozen=True)
class Snapshot:
    """The figures of one background computation."""

    drift: DriftReport | None  # None: the model has no reference
    accuracy: Figure
    estimated_accuracy: Figure | None
    coverage: Figure | None  # None: the model has no prediction sets
    computed_at: float  # Unix time


_latest: Snapshot | None = None


def compute(service: RunningService) -> Snapshot:
    """Compute the gauges' figures for the running service (blocking: run it in a thread)."""
    settings = get_settings()
    tag, metadata = service.classifier.tag, service.classifier.metadata
    try:
        drift: DriftReport | None = live.drift(service.engine, tag, metadata, window=settings.drift_window,
                                               threshold=settings.drift_psi_threshold)
    except errors.NoReference:
        drift = None
    quality = live.quality(service.engine, service.classifier, model=tag, since=None,
                           min_count=settings.quality_min_count, window=settings.drift_window,
                           newest=settings.drift_window)
    return Snapshot(drift, quality.accuracy, quality.estimated_accuracy, quality.coverage, time.time())


class _Gauges(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.snapshot
        yield _gauge("drybeans_monitoring_computed_timestamp_seconds",
                     "When the drift and accuracy gauges were last computed (Unix time).", snapshot.computed_at)
        accuracy = snapshot.accuracy
        yield _gauge("drybeans_live_accuracy_beans", "Reported beans behind drybeans_live_accuracy.",
                     accuracy.count)
        if accuracy.live is not None:  # absent below the minimum count
            yield _gauge("drybeans_live_accuracy", "Accuracy on the newest reported beans of the serving model.",
                         accuracy.live)
        if accuracy.training is not None:
            yield _gauge("drybeans_training_accuracy", "Holdout accuracy of the serving model at training.",
                         accuracy.training)
        estimated = snapshot.estimated_accuracy
        if estimated is not None and estimated.live is not None:  # absent below the minimum count
            yield _gauge("drybeans_estimated_accuracy", "Expected accuracy of the serving model on the newest "
                         "recorded beans, from its calibrated probabilities (no labels needed).", estimated.live)
        coverage = snapshot.coverage
        if coverage is not None and coverage.live is not None:
            yield _gauge("drybeans_live_coverage", "Share of the newest reported beans whose true variety is in the "
                         "serving model's prediction set at coverage 0.95.", coverage.live)
        drift = snapshot.drift
        if drift is None:
            return
        yield _gauge("drybeans_drift_window_beans", "Newest recorded beans the drift gauges compare with the "
                     "training data.", drift.beans)
        psi = GaugeMetricFamily("drybeans_drift_psi", "Population stability index of a feature, newest beans "
                                "against the training deciles.", labels=["feature"])
        outside = GaugeMetricFamily("drybeans_drift_outside_training_range_ratio", "Share of the newest beans "
                                    "outside the training range of a feature.", labels=["feature"])
        for name, figure in drift.features.items():
            if figure.psi is not None and figure.outside_training_range is not None:
                psi.add_metric([name], figure.psi)
                outside.add_metric([name], figure.outside_training_range)
        yield psi
        yield outside
        if drift.class_mix.psi is not None:
            yield _gauge("drybeans_drift_class_mix_psi", "Population stability index of the predicted varieties "
                         "of the newest beans against the training class priors.", drift.class_mix.psi)
        if drift.outside_training_range is not None:
            yield _gauge("drybeans_drift_beans_outside_training_range_ratio", "Share of the newest beans outside "
                         "the training range in at least one feature.", drift.outside_training_range)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def exposition() -> str:
    """The gauges in Prometheus' text format; empty until the first computation."""
    if _latest is None:
        return ""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Gauges(_latest))
    return generate_latest(registry).decode()


async def _refresh_forever(interval: float) -> None:
    global _latest  # one snapshot per worker process, replaced whole
    while True:
        service = service_if_started()
        if service is not None:
            try:
                _latest = await asyncio.to_thread(compute, service)
            except Exception as exc:  # the database may be down: keep the last figures, try again later
                logger.warning("monitoring gauges not refreshed: %s", type(exc).__name__)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def refreshing(_app: object) -> AsyncIterator[None]:
    """Lifespan of the worker's web app: recompute the gauges every interval until shutdown."""
    task = asyncio.create_task(_refresh_forever(get_settings().monitoring_interval_seconds))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""The `drybeans` BentoML service: classify beans, record every prediction, read the records back."""

import gc

# No garbage collection while the imports below load what stays for the process's life (serving/lifecycle.py): on
# again at the end of this module, except in a worker, which keeps it off while BentoML builds its app and until
# DryBeans.__init__ settles it (0.2-0.3 s of a cold start, measured).
gc.disable()

import asyncio
import json
from datetime import UTC
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

import bentoml
from fastapi import FastAPI, Query
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker
from starlette.responses import Response
from threadpoolctl import threadpool_limits

from api import errors, parsing, rest_errors
from api.rest_errors import answers_errors
from api.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    PredictionPage,
    Readiness,
    StoredPrediction,
    TutorialRequest,
    TutorialResponse,
    VarietyCounts,
)
from config import Settings, get_settings
from console.routes import router as console_router
from data.schema import CLASSES, FEATURES
from db import startup, store
from db.engine import create_db_engine
from db.health import DatabaseProbe
from db.models import FEATURE_COLUMNS, Prediction
from monitoring.metrics import exposition as monitoring_gauges
from monitoring.routes import router as monitoring_router
from photos.routes import router as photos_router
from protocol.routes import router as v2_router
from protocol.shortcut import InferShortcut
from rollout import registry, sync
from rollout.guard import ScoringStats
from rollout.registry import Models
from rollout.roles import Roles
from rollout.routes import router as models_router
from rollout.shadow import ShadowScorer
from rollout.sync import RoleSync
from serving import lifecycle, listener, metrics
from serving.answers import Answered, classify_answer, count_doubts, refuse_inconsistent, refuse_unexplainable
from serving.auth import BearerToken, bearer_settings, bearer_token
from serving.client_keys import CLIENT_KEY_HEADER, client_key
from serving.guard import request_guard
from serving.headers import SecurityHeaders
from serving.probes import Probes
from serving.recording import PredictionRecorder, Recorded
from serving.shortcut import ClassifyShortcut, PredictShortcut
from trust.assessment import DEFAULT_COVERAGE, assess

if TYPE_CHECKING:
    import grpc
    import numpy as np
    import numpy.typing as npt

    from model.classifier import Classifier
    from serving.running import RunningService

MODEL_TAG = "drybean_svc:latest"
# Regular expressions over the request's URL, as OpenTelemetry's exclusion list takes them.
PREDICTION_URLS = ("/predict$", "/v1/classify$", "/v2/models/drybean_svc(/versions/[^/]+)?/infer$")

web = FastAPI(title="drybeans", openapi_url=None, docs_url=None, redoc_url=None)  # BentoML serves the schema
web.include_router(console_router)  # the console at /, GET /v1/model, /docs and /docs.json with our own info
web.include_router(monitoring_router)  # POST /v1/feedback, GET /v1/quality, GET /v1/drift
web.include_router(v2_router)  # the Open Inference Protocol (V2): /v2, /v2/health/*, /v2/models/drybean_svc/*
web.include_router(models_router)  # the operator API: /v1/models, role changes, audit, compare
web.include_router(photos_router)  # POST /v1/photos: the beans in a photo, measured and classified


web.add_exception_handler(errors.ApiError, rest_errors.api_error_handler)
web.add_exception_handler(SQLAlchemyError, rest_errors.database_error_handler)


@bentoml.asgi_app(web, path="/")
@bentoml.service(
    name="drybeans", workers=2, traffic={"timeout": 60},
    # BentoML's defaults, slimmed where a prediction paid for what nobody gets (issue #11, docs/performance.md):
    # tracing samples nothing unless configured, yet its middleware built spans for every prediction; the
    # access log's content types and lengths are in the metrics already. Both can be set back in BentoML's
    # configuration (`services.drybeans.tracing.excluded_urls`, `services.drybeans.logging.access`).
    tracing={"excluded_urls": list(PREDICTION_URLS)},
    logging={"access": {"request_content_length": False, "request_content_type": False,
                        "response_content_length": False, "response_content_type": False}},
)
class DryBeans:
    """Dry bean variety classifier; every prediction is recorded in the database."""

    model = bentoml.models.BentoModel(MODEL_TAG)
    bento_service: Any  # set by BentoML on the instance: the Service object (its OpenAPI document: /docs.json)

    def __init__(self) -> None:
        with lifecycle.collector_paused():  # what start-up makes stays: collected once, below, and frozen
            lifecycle.exit_with_parent()
            settings = get_settings()
            # One BLAS thread per worker: the workers already use every core, and small products gain nothing.
            threadpool_limits(1)
            self.max_beans = settings.max_beans_per_request
            self.reject_inconsistent = settings.reject_inconsistent
            self.engine = create_db_engine(settings)
            startup.migrate_if_behind(self.engine, settings)  # serve anyway when the database is down: spooled
            self.sessions = sessionmaker(self.engine, expire_on_commit=False)
            self.database = DatabaseProbe(create_db_engine(settings, pooled=False), timeout=2)
            self.writer = startup.open_writer(self.engine, settings)
            self.recorder = PredictionRecorder(self.writer)
            self.models, self.roles = self.load_models(settings)
            self.drain_seconds = settings.shutdown_drain_seconds
            self.grpc_server: grpc.aio.Server | None = None  # started by serve_grpc, on the worker's event loop
            if settings.metrics_port is not None:
                metrics.serve_on_port(settings.metrics_port, self.metrics_exposition,
                                      lambda app: SecurityHeaders(BearerToken(app, **access_control())))
        lifecycle.settle_garbage_collector()
        if settings.reuse_port:  # last: BentoML calls __init__ in the app's lifespan, before uvicorn accepts
            listener.listen_on_own_socket()

    @bentoml.on_deployment
    def refuse_to_start_unprotected() -> None:
        """Once, in `bentoml serve`'s own process before any worker starts: exit, saying what to set, when tokens are
        required and none is set or the tokens file is unusable (a worker failing there would be restarted)."""
        access_control()

    def load_models(self, settings: Settings) -> tuple[Models, RoleSync]:
        """Every model to serve, with the roles in force, followed from the database by a thread of this worker."""
        stored = registry.stored_models(settings.model_tags)
        self.trained_at = {str(model.tag.version): model.info.creation_time for model in stored}
        self.roles_cache = settings.spool_dir / "roles.json"
        classifiers = registry.load(stored)
        shadow = ShadowScorer(self.engine, settings.shadow_queue_requests)
        roles = sync.initial_roles(self.engine, self.roles_cache, Roles(champion=next(iter(classifiers))))
        models = Models(classifiers, roles, shadow, ScoringStats())
        follower = RoleSync(self.engine, models, self.roles_cache, interval=settings.roles_poll_seconds,
                            min_count=settings.quality_min_count, min_requests=settings.guard_min_requests,
                            latency_ratio=settings.guard_latency_ratio,
                            latency_margin=settings.guard_latency_margin_ms / 1000)
        follower.start()
        return models, follower

    @property
    def classifier(self) -> "Classifier":
        """The champion: the model that answers unless a canary or a named version does."""
        return self.models.champion

    async def score_and_record(self, rows: "npt.NDArray[np.float64]", *, store: bool, client_key: str | None = None,
                               version: str | None = None, explain: bool = False, want_ids: bool = False,
                               coverage: float | None = DEFAULT_COVERAGE) -> Answered:
        """Every prediction path's work: choose the model (rollout/registry.py), score, say which answers to doubt
        (trust/; not when `coverage` is None), record unless `store` is false, then hand the request to the shadow
        (or, for a canary's, to the champion) in the background."""
        choice = self.models.choose(client_key, version, explain=explain)
        refuse_unexplainable(choice.classifier, explain=explain)  # before anything is recorded
        scored = self.models.score(choice, rows)
        assessment = None
        if coverage is not None:
            classifier = scored.classifier
            assessment = assess(classifier, rows, scored.labels, classifier.probabilities(scored.scores), coverage)
            count_doubts(assessment)
        recorded = (await self.recorder.record(rows, scored.labels, model_tag=scored.classifier.tag,
                                               request_id=scored.request_id, want_ids=want_ids,
                                               flags=assessment.flags() if assessment else None)
                    if store else Recorded("", "skipped"))
        self.models.ask_second_opinion(scored, rows)
        return Answered(scored, recorded, assessment)

    @bentoml.api(route="/predict")
    @answers_errors
    async def predict(self, request: TutorialRequest, /, ctx: bentoml.Context) -> TutorialResponse:
        """The tutorial's endpoint: labels as a JSON-encoded string.

        Headers tell what became of the predictions: X-Prediction-Store (committed, spooled or skipped) and
        X-Request-ID (their request_id in table drybeans).
        """
        predictions, recorded = await self.tutorial_prediction(
            request.data, request.store, client_key(ctx.request.headers.get(CLIENT_KEY_HEADER)))
        ctx.response.metadata.update(recorded.headers())
        return TutorialResponse(predictions=predictions)

    async def tutorial_prediction(self, data: str | list[Any], store: bool,
                                  client_key: str | None = None) -> tuple[str, Recorded]:
        """`/predict`'s work, also run by its shortcut (serving/shortcut.py): the labels as a JSON-encoded string,
        and what became of the records."""
        rows = parsing.tutorial_rows(data, self.max_beans)
        answered = await self.score_and_record(rows, store=store, client_key=client_key, coverage=None)
        return json.dumps(answered.scored.labels.tolist()), answered.recorded

    @bentoml.api(route="/v1/classify", output_spec=ClassifyResponse)
    @answers_errors
    async def classify(self, request: ClassifyRequest, /, ctx: bentoml.Context) -> Response:
        """Classify named beans: each bean's label, per-variety scores and calibrated probabilities, which answers to
        doubt (consistent features, in the training distribution, a prediction set at the requested coverage),
        optionally why the label won, and the ids of the stored records. `model` names the model that answered (the
        champion, or the canary for its share of X-Client-Key values)."""
        return Response(await self.classification(
            request, client_key(ctx.request.headers.get(CLIENT_KEY_HEADER))),
            media_type="application/json")

    async def classification(self, request: ClassifyRequest, client_key: str | None = None) -> bytes:
        """`/v1/classify`'s answer, as JSON; also given by its shortcut (serving/shortcut.py)."""
        rows = parsing.bean_rows(request.beans, self.max_beans)
        if self.reject_inconsistent:
            refuse_inconsistent(rows)  # 422 before anything is recorded
        answered = await self.score_and_record(rows, store=request.store, explain=request.explain, want_ids=True,
                                               coverage=request.coverage, client_key=client_key)
        return classify_answer(answered, explain=request.explain)

    @web.get("/v1/predictions", tags=["Records"])
    def predictions(
        self,
        limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="rows to skip, newest first")] = 0,
        variety: Annotated[Literal[CLASSES] | None, Query(description="only this variety")] = None,  # type: ignore[valid-type]
    ) -> PredictionPage:
        """Recorded predictions, newest first."""
        with self.sessions() as session:
            rows, total = store.recent_predictions(session, limit=limit, offset=offset, name=variety)
        return PredictionPage(items=[stored_prediction(row) for row in rows], total=total, limit=limit,
                              offset=offset)

    @web.get("/v1/predictions/counts", tags=["Records"])
    def counts(self) -> VarietyCounts:
        """How many predictions of each variety are recorded."""
        with self.sessions() as session:
            counts = store.counts_by_name(session)
        return VarietyCounts(counts=counts, total=sum(counts.values()))

    async def readiness(self) -> Readiness:
        """Ready when the model is loaded (it is, once __init__ returned) and every record can be kept: the
        database answers or the spool has room. A database outage alone leaves the pod serving (spooled)."""
        database_up = await self.database.answers()
        spool = self.writer.spool
        room, depth = await asyncio.gather(asyncio.to_thread(spool.has_room), asyncio.to_thread(spool.depth))
        return Readiness(ready=database_up or room, model=self.classifier.tag,
                         database="up" if database_up else "down", spool="ok" if room else "full",
                         spool_depth=depth)

    def alive(self) -> bool:
        """Whether this worker can still record predictions: its writer thread runs."""
        return self.writer.alive

    def __metrics__(self, exposition: str) -> str:
        """BentoML's metrics, the spool's depth, dead letters and waiting feedback (shared by all workers, so read at
        scrape time), the drift and live-accuracy gauges (computed in the background), and the models' roles."""
        return (exposition + monitoring_gauges() + self.roles.exposition()
                + metrics.spool_exposition(self.writer.spool))

    def metrics_exposition(self) -> str:
        """What the metrics port serves: the same text as BentoML's /metrics."""
        return self.__metrics__(metrics.multiprocess_exposition())

    @bentoml.on_startup
    async def serve_grpc(self) -> None:
        """V2 over gRPC on DRYBEANS_GRPC_PORT, from this worker's event loop (off when unset)."""
        settings = get_settings()
        if settings.grpc_port is not None:
            from protocol import grpc_server  # grpc and the stubs, only where gRPC is served

            self.grpc_server = await grpc_server.start(self, settings.grpc_port, **access_control(),
                                                       max_message_bytes=settings.max_body_bytes)

    @bentoml.on_shutdown
    async def close(self) -> None:
        """Finish gRPC calls in flight, store what is queued, drain the spool while the grace period allows,
        release the connections."""
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=self.drain_seconds)
        self.roles.stop()
        self.models.close(self.drain_seconds)
        self.writer.close(self.drain_seconds)
        self.engine.dispose()


def stored_prediction(row: Prediction) -> StoredPrediction:
    """The wire form of a stored row."""
    values = [getattr(row, column) for column in FEATURE_COLUMNS.values()]
    return StoredPrediction(
        id=row.id, name=row.name, request_id=row.request_id, model_tag=row.model_tag,
        created_at=row.created_at.replace(tzinfo=UTC) if row.created_at else None,
        features=None if None in values else dict(zip(FEATURES, values, strict=True)),
    )


def access_control() -> dict[str, Any]:
    """BearerToken's settings; refuses to start without a token when one is required."""
    return bearer_settings(get_settings())


def install_middleware(service: Any) -> None:
    """Add to `service` (a bentoml Service) the middleware every HTTP request passes through, outermost first.

    BentoML's own layers (its metrics, access log, timeout and concurrency limit) wrap these; the routes (BentoML's
    APIs, and the FastAPI app `web`'s) sit inside them. Each layer answers a request itself or passes it inwards:

    1. RestorePath (serving/metrics.py): metrics labelled by route template, not by raw path.
    2. SecurityHeaders: on every answer, including the refusals of every layer below.
    3. RequestGuard: body size, JSON structure and Content-Type checked before anything parses the body; every 4xx
       answer from further in reshaped into the one error object (api/rest_errors.py).
    4. MetricsElsewhere: with DRYBEANS_METRICS_PORT set, /metrics only there (404 here).
    5. BearerToken: a token, and its scope, where one is needed.
    6. Probes: /readyz and /livez answered here.
    7. PredictShortcut, ClassifyShortcut, InferShortcut: the plain shapes of /predict, /v1/classify and V2 infer
       answered without BentoML's route bookkeeping (docs/performance.md), by the code the routes run.

    Each layer is built when a worker builds its app, from the settings read then: nothing is read at import.
    """
    metrics.label_by_route(service)
    for layer in (SecurityHeaders, request_guard, metrics.metrics_elsewhere, bearer_token, Probes,
                  partial(PredictShortcut, service_name=service.name),
                  partial(ClassifyShortcut, service_name=service.name), InferShortcut):
        service.add_asgi_middleware(layer)


rest_errors.quiet_client_errors()
install_middleware(DryBeans)
if bentoml.server_context.worker_index is None:  # not a worker (`bentoml serve`'s own process, a test, a build)
    gc.enable()

if TYPE_CHECKING:  # the type checker holds DryBeans to what the routes use of it (serving/running.py)
    def _offers_what_the_routes_use(service: DryBeans) -> RunningService:
        return service

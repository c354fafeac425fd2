"""Configuration from the environment, read once, in one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:  # SQLAlchemy is imported where a database is used: train.py reads these settings too (0.26 s)
    from sqlalchemy.engine import URL

UCI_ARCHIVE_URL = "https://archive.ics.uci.edu/static/public/602/dry+bean+dataset.zip"


def _env(name: str) -> AliasChoices:
    """Read a field from an exact, unprefixed variable name (the tutorial's names)."""
    return AliasChoices(name)


class Settings(BaseSettings):
    """Every setting of the project; unprefixed names are the tutorial's, the rest start with DRYBEANS_."""

    model_config = SettingsConfigDict(env_prefix="DRYBEANS_", extra="ignore", frozen=True, env_ignore_empty=True,
                                      hide_input_in_errors=True)  # inputs may be passwords

    # Dataset
    data_path: Path | None = Field(None, validation_alias=_env("DRYBEAN_DATA"),
                                   description="A dataset file (CSV, ARFF or the UCI zip) to use as is.")
    data_url: str = Field(UCI_ARCHIVE_URL, validation_alias=_env("DRYBEAN_DATA_URL"),
                          description="Where to download the UCI archive from when no file is present.")

    # Run-time files
    state_dir: Path = Field(Path("var"), description="Where the service and train.py keep their run-time files, "
                            "unless set one by one below: the embedded database (with its WAL and migration lock), "
                            "the spool, and training reports.")

    # Database: DATABASE_URL, else the tutorial's MYSQL_* variables, else an embedded SQLite file.
    database_url: SecretStr | None = Field(None, validation_alias=_env("DATABASE_URL"),
                                           description="Any SQLAlchemy URL; wins over MYSQL_*.")
    mysql_host: str | None = Field(None, validation_alias=_env("MYSQL_HOST"))
    mysql_port: int = Field(3306, validation_alias=_env("MYSQL_PORT"))
    mysql_user: str | None = Field(None, validation_alias=_env("MYSQL_USER"))
    mysql_password: SecretStr = Field(SecretStr(""), validation_alias=_env("MYSQL_PASSWORD"))
    mysql_db: str | None = Field(None, validation_alias=_env("MYSQL_DB"))
    sqlite_path: Path = Field(default_factory=lambda given: given["state_dir"] / "drybeans.sqlite3",
                              description="The embedded database used when no MySQL is configured.")
    pool_size: int = Field(4, ge=1, description="Connections kept open per worker process.")
    pool_recycle_seconds: int = Field(1800, ge=1, description="Reconnect after this long (below wait_timeout).")
    db_timeout_seconds: float = Field(5.0, gt=0, le=60, description="Longest wait for the database: to connect, "
                                      "to send, to read an answer, and (on the server) for one statement. A call "
                                      "that takes longer counts as an outage: predictions are spooled.")

    # Schema
    migrate_on_startup: bool = Field(True, description="Bring the schema to head when a worker starts; "
                                     "production turns this off and runs `python -m db.migrate` instead.")
    app_db_user: str | None = Field(None, description="Given to `python -m db.migrate`: the service's "
                                    "database user, granted SELECT and INSERT on its tables (predictions, "
                                    "feedback, roles, second opinions).")

    # Serving
    max_beans_per_request: int = Field(10_000, ge=1, description="Larger requests are refused with 413.")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Larger bodies are refused with 413 (a "
                                "photo's file too).")
    max_photo_megapixels: float = Field(40.0, gt=0, description="Larger photos are refused with 422, from their "
                                        "header, before any pixel is decoded.")
    max_beans_per_photo: int = Field(500, ge=1, description="A photo with more beans is refused with 422.")
    spool_dir: Path = Field(default_factory=lambda given: given["state_dir"] / "spool",
                            description="Where predictions wait, durably, while the database is down.")
    spool_max_bytes: int = Field(1 << 30, ge=1 << 20, description="The spool takes no more than this; beyond it, "
                                 "while the database is down, stored predictions are refused with 503.")
    replay_rows_per_second: int = Field(20_000, ge=100, description="Spooled predictions are written back at most "
                                        "this fast, between live writes, so that live requests keep their latency.")
    shutdown_drain_seconds: float = Field(20.0, ge=0, description="On shutdown, after the last request, how long "
                                          "to keep replaying the spool into the database.")
    feedback_wait_seconds: float = Field(86_400.0, ge=0, description="How long a spooled feedback report naming a "
                                         "prediction not recorded yet (spooled on another pod, say) waits for it; "
                                         "then it is set aside as a dead letter (`python -m db.deadletter`).")

    reject_inconsistent: bool = Field(False, description="Refuse (422) a /v1/classify request with a bean whose "
                                      "features contradict each other (trust/consistency.py), instead of answering "
                                      "it with consistent: false.")

    # Serving
    reuse_port: bool = Field(True, description="Each worker listens on a socket of its own (SO_REUSEPORT, Linux), "
                             "so that connections spread over the workers instead of piling onto one.")

    grpc_port: int | None = Field(None, ge=1, le=65535, description="Serve V2 over gRPC (and grpc.health.v1) on "
                                  "this port from every worker; off when unset. The image and manifests use 3002.")

    # Models and their roles (issue #21: shadow, canary, promote, roll back)
    models: str | None = Field(None, description="Comma-separated drybean_svc tags to load (the first answers "
                               "until roles are set); default: every version in the model store, the newest first.")
    roles_poll_seconds: float = Field(2.0, gt=0, le=60, description="How often each worker reads the models' roles "
                                      "from the database: a change reaches every worker and pod within this.")
    shadow_queue_requests: int = Field(1_000, ge=1, description="Requests waiting for the shadow (or the champion "
                                       "scoring a canary's beans); beyond it they are not scored, never delayed.")
    guard_min_requests: int = Field(200, ge=10, description="Canary requests a worker needs before its guard judges "
                                    "the canary's p99 scoring time against the champion's.")
    guard_latency_ratio: float = Field(3.0, gt=1, description="A canary whose p99 scoring time is more than this "
                                       "many times the champion's (and DRYBEANS_GUARD_LATENCY_MARGIN_MS above it) "
                                       "is rolled back.")
    guard_latency_margin_ms: float = Field(50.0, ge=0, description="How far above the champion's a canary's p99 "
                                           "scoring time must also be for the guard to act: 1 ms against 0.05 ms "
                                           "is twenty times slower, but no client notices it.")

    # Access and metrics
    api_token: SecretStr | None = Field(None, description="When set, reads of recorded data, feedback and "
                                        "/metrics need `Authorization: Bearer <token>`; it has every scope.")
    tokens_file: Path | None = Field(None, description="A file of named, scoped tokens, stored hashed (python -m "
                                     "serving.tokens writes it; format in serving/token_file.py), re-read within a "
                                     "second of a change; they work beside DRYBEANS_API_TOKEN.")
    protect_predict: bool = Field(False, description="Require the token for predictions too (/predict, "
                                  "/v1/classify, V2 infer); off by default for the tutorial's clients.")
    require_token: bool = Field(False, description="Refuse to start without DRYBEANS_API_TOKEN or "
                                "DRYBEANS_TOKENS_FILE. Compose and the Kubernetes manifests set it; setting it to "
                                "false there opens the service on purpose.")
    metrics_port: int | None = Field(None, ge=1, le=65535, description="Serve Prometheus metrics on this port "
                                     "only, not on the API's port (Kubernetes keeps it off the public Service).")

    # Monitoring
    quality_min_count: int = Field(30, ge=1, description="A live quality figure needs at least this many reported "
                                   "beans behind it; below that it is null, never a number from three beans.")
    drift_window: int = Field(1000, ge=10, description="How many of the newest recorded beans are compared with "
                              "the training reference: /v1/drift's default, and the window of the /metrics gauges.")
    drift_max_window: int = Field(100_000, ge=10, description="The largest window /v1/drift takes.")
    drift_psi_threshold: float = Field(0.2, gt=0, description="A feature whose PSI is above this is flagged as "
                                       "drifted (0.1: watch, 0.25: significant, by the usual rule of thumb).")
    monitoring_interval_seconds: float = Field(60.0, ge=1, description="How often each worker recomputes the "
                                               "drift and live-accuracy gauges it exports to /metrics.")

    @model_validator(mode="after")
    def _database_settings_usable(self) -> Settings:
        if self.database_url is not None:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                make_url(self.database_url.get_secret_value())
            except ArgumentError:
                # Not echoed: the URL may hold a password.
                raise ValueError("DATABASE_URL is not a SQLAlchemy URL such as "
                                 "mysql+pymysql://user:password@host:3306/database") from None
        elif self.mysql_host:
            missing = [name for name, value in (("MYSQL_USER", self.mysql_user), ("MYSQL_DB", self.mysql_db))
                       if not value]
            if missing:
                raise ValueError(f"MYSQL_HOST is set, so {' and '.join(missing)} must be set too")
        return self

    @property
    def model_tags(self) -> list[str] | None:
        """DRYBEANS_MODELS as a list of tags; None: every drybean_svc in the model store."""
        tags = [tag.strip() for tag in (self.models or "").split(",") if tag.strip()]
        return tags or None

    @property
    def sqlalchemy_url(self) -> URL:
        """The database to record predictions in."""
        from sqlalchemy.engine import URL, make_url

        if self.database_url is not None:
            return make_url(self.database_url.get_secret_value())
        if self.mysql_host:
            return URL.create(
                "mysql+pymysql",
                username=self.mysql_user,
                password=self.mysql_password.get_secret_value() or None,
                host=self.mysql_host,
                port=self.mysql_port,
                database=self.mysql_db,
                query={"charset": "utf8mb4"},
            )
        return URL.create("sqlite+pysqlite", database=str(self.sqlite_path))


@lru_cache
def get_settings() -> Settings:
    """The settings, read from the environment once per process (tests clear the cache)."""
    return Settings()

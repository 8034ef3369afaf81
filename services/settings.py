"""Settings for flywheel's processes, read from the environment (or a `.env` file) in main().

Nothing here reads the environment at import time. Secrets are SecretStr and never logged.
S3 credentials are not settings: boto3's standard chain finds them (env, files, roles).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flywheel_feedback.services.gateway.keys import BrowserKey, Key, KeyRing, ServerKey, load_keys_file
from flywheel_feedback.services.lake.store import ObjectStore, open_store

if TYPE_CHECKING:
    from flywheel_feedback.labeling.changes import DetectorConfig
    from flywheel_feedback.services.labeler.pipeline import LabelerOptions
    from flywheel_feedback.services.lake.retention import RetentionPolicy

ENV_FILE = ".env"


def settings_config(prefix: str) -> SettingsConfigDict:
    """What every settings class shares: its variables come from the environment, else from `.env` in the
    working directory (the environment wins). Nested classes read the file too, so one `.env` configures a
    whole process. Frozen; variables of other classes and programs are ignored."""
    return SettingsConfigDict(
        env_prefix=prefix, env_file=ENV_FILE, env_file_encoding="utf-8", frozen=True, extra="ignore"
    )


class KafkaSettings(BaseSettings):
    model_config = settings_config("FLYWHEEL_KAFKA_")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def confluent_config(self) -> dict[str, Any]:
        """librdkafka options (used by the capture consumer and the DLQ producer)."""
        conf: dict[str, Any] = {"security.protocol": self.security_protocol.lower()}
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = self.sasl_password.get_secret_value() if self.sasl_password else ""
        for key, path in (
            ("ssl.ca.location", self.ssl_cafile),
            ("ssl.certificate.location", self.ssl_certfile),
            ("ssl.key.location", self.ssl_keyfile),
        ):
            if path:
                conf[key] = str(path)
        return conf

    def aiokafka_options(self) -> dict[str, Any]:
        """aiokafka options (used by the HTTP gateway's producer)."""
        opts: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        opts["security_protocol"] = self.security_protocol
        if self.sasl_mechanism:
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile or "SSL" in self.security_protocol:
            from aiokafka.helpers import create_ssl_context

            opts["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
            )
        return opts

    def kafka_python_options(self) -> dict[str, Any]:
        """kafka-python options (used by the emitter and the announcement producer)."""
        opts: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers.split(",")}
        opts["security_protocol"] = self.security_protocol
        if self.sasl_mechanism:
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.ssl_cafile:
            opts["ssl_cafile"] = str(self.ssl_cafile)
        if self.ssl_certfile:
            opts["ssl_certfile"] = str(self.ssl_certfile)
        if self.ssl_keyfile:
            opts["ssl_keyfile"] = str(self.ssl_keyfile)
        return opts


class LakeSettings(BaseSettings):
    model_config = settings_config("FLYWHEEL_LAKE_")

    url: str = "./lake"
    # For S3-compatible servers; credentials come from boto3's chain (AWS_ACCESS_KEY_ID, ...).
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    umask: str | None = Field(
        None, pattern=r"^0?[0-7]{3}$",
        description="the process's umask for the lake's local files, octal (0027: group-readable); unset: the "
                    "umask the process was started with",
    )

    def open(self) -> ObjectStore:
        """The lake's store; applies `umask` to the process first (our files and delta-rs's follow it)."""
        if self.umask is not None:
            os.umask(int(self.umask, 8))
        options: dict[str, Any] = {}
        if self.s3_endpoint_url:
            options["endpoint_url"] = self.s3_endpoint_url
        if self.s3_region:
            options["region_name"] = self.s3_region
        return open_store(self.url, **options) if self.url.startswith("s3://") else open_store(self.url)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

# Vacuum never keeps less than this without being forced: below it, it could delete a file a writer has written
# and not committed yet, or one that a reader of a slightly older version is reading.
RETENTION_FLOOR = timedelta(days=1)


def parse_duration(value: Any) -> timedelta:
    """"7d" -> 7 days ("90m", "36h", "2w"; a bare number is seconds); a timedelta passes through."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return timedelta(seconds=value)
        raise ValueError(f"expected a duration such as '90m', '36h' or '7d', got {value!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


def retention_problem(retention: timedelta, *, force: bool) -> str | None:
    """Why a vacuum retention is refused (None: it is not)."""
    if retention < RETENTION_FLOOR and not force:
        return (f"retention {format_duration(retention)} is below the floor of {format_duration(RETENTION_FLOOR)}; "
                "force it only while no writer runs")
    return None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class MaintenanceSettings(BaseSettings):
    """Lake maintenance: compaction, vacuum and checkpoints of every Delta table (`flywheel lake optimize`, and
    `flywheel serve` every `interval_s`)."""

    model_config = settings_config("FLYWHEEL_MAINTENANCE_")

    interval_s: float = Field(3600.0, gt=0, description="how often `serve` maintains the lake")
    retention: Duration = Field(
        timedelta(days=7), description="vacuum keeps every file a version this recent needs: time travel this far"
    )
    force: bool = Field(False, description="allow a retention below the floor (RETENTION_FLOOR)")
    # How long rows are kept at all (unset: forever), enforced by the same runs (services/lake/retention.py).
    # Eval slices and exports are not expired: they hold masked copies of what they need.
    raw_events_ttl: Duration | None = Field(
        None, description="raw events older than this (by event time) are deleted; labels keep their masked copy")
    dead_letters_ttl: Duration | None = Field(
        None, description="dead-letter files of file capture written longer ago than this are deleted")
    gold_ttl: Duration | None = Field(
        None, description="annotators' answers submitted longer ago than this are deleted")

    @model_validator(mode="after")
    def _retention_floor(self) -> MaintenanceSettings:
        problem = retention_problem(self.retention, force=self.force)
        if problem is not None:
            raise ValueError(problem)
        return self

    def policy(self) -> RetentionPolicy:
        from flywheel_feedback.services.lake.retention import RetentionPolicy

        return RetentionPolicy(raw_events=self.raw_events_ttl, dead_letters=self.dead_letters_ttl, gold=self.gold_ttl)


class PrivacySettings(BaseSettings):
    """Erasure on request (`flywheel privacy erase`)."""

    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_PRIVACY_", frozen=True, extra="ignore")

    requested_by: str | None = Field(
        None, description="who requests erasures (the audit record's requested_by; default: the OS user)")
    lake: LakeSettings = Field(default_factory=LakeSettings)


class CaptureSettings(BaseSettings):
    model_config = settings_config("FLYWHEEL_CAPTURE_")

    topic: str = "flywheel.events"
    dlq_topic: str = "flywheel.events.dlq"
    group_id: str = "flywheel-capture"
    batch_size: int = Field(50_000, ge=1, description="events per partition before a file is written")
    flush_interval_s: float = Field(5.0, gt=0, description="longest time an event waits in memory")
    poll_records: int = Field(5_000, ge=1)
    max_event_bytes: int = Field(256 * 1024, ge=64)
    compression_level: int = Field(1, ge=1, le=22)
    # OTLP trace exports as an OpenTelemetry Collector's Kafka exporter writes them (encoding otlp_proto: one
    # ExportTraceServiceRequest per message); their LLM spans land as interactions. Unset: not read.
    otlp_topic: str | None = None
    otlp_max_message_bytes: int = Field(16 * 1024 * 1024, ge=64, description="larger OTLP messages are dead-lettered")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)


class OtlpSettings(BaseSettings):
    """OTLP/HTTP trace ingestion (`POST /v1/traces`, mounted by the gateway): LLM spans become interactions."""

    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_OTLP_", frozen=True, extra="ignore")

    topic: str = Field("flywheel.events", description="where the interactions go: the topic capture reads")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="a request's limit, also once decompressed")
    # capture's FLYWHEEL_CAPTURE_MAX_EVENT_BYTES: an interaction taken here must not be dead-lettered there
    max_event_bytes: int = Field(256 * 1024, ge=64)
    produce_timeout_s: float = Field(30.0, gt=0, description="longest wait for Kafka to acknowledge a request's events")
    retry_after_s: int = Field(5, ge=1, description="the Retry-After of a 503 when Kafka does not take the events")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)


class WebhookSettings(BaseSettings):
    """The receiver of Argilla's signed webhooks: a route of the HTTP app (`flywheel annotate serve` serves it on
    host:port; `flywheel serve` on its own port, at the same path)."""

    model_config = settings_config("FLYWHEEL_WEBHOOK_")

    # Standard Webhooks secret (base64, optionally `whsec_`-prefixed). Unset: `serve` registers the webhook
    # with Argilla for public_url and uses the secret Argilla generated for it.
    secret: SecretStr | None = None
    # standardwebhooks refuses anything over 5 minutes away; this can only narrow that window
    tolerance_s: int = Field(300, ge=1, le=300, description="how far webhook-timestamp may be from now, either way")
    public_url: str | None = Field(None, description="the URL Argilla's worker posts to (this receiver's address)")
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    path: str = "/argilla-webhook"
    max_body_bytes: int = Field(1024 * 1024, ge=1024)


class AnnotationSettings(BaseSettings):
    """Annotation sync with Argilla: push the outbox, take answers back (webhooks and reconcile)."""

    model_config = settings_config("FLYWHEEL_ARGILLA_")

    url: str = "http://127.0.0.1:6900"
    api_key: SecretStr | None = None
    workspace: str = "default"
    dataset_prefix: str = Field("flywheel-", description="a queue's dataset is named <prefix><queue>")
    batch_size: int = Field(250, ge=1, le=500, description="records per bulk upsert (Argilla takes at most 500)")
    min_submitted: int = Field(1, ge=1, description="submitted responses that complete a record")
    timeout_s: int = Field(60, ge=1)
    retries: int = Field(3, ge=0, description="attempts per batch after the first, with backoff, before giving up")
    retry_backoff_s: float = Field(2.0, ge=0)
    reconcile_every_s: float = Field(300.0, gt=0, description="how often `serve` reconciles (a missed webhook)")
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)


class LabelerSettings(BaseSettings):
    model_config = settings_config("FLYWHEEL_LABELER_")

    interval_s: float = Field(30.0, gt=0, description="how often the running labeler looks for new data")
    abandon_window_s: float = Field(600.0, gt=0, description="no activity for this long after an output = abandoned")
    horizon_h: float = Field(24.0, gt=0, description="signals count up to this long after an answer")
    model_window_days: float = Field(14.0, gt=0, description="the label model is fitted over this much recent traffic")
    cleanlab_rows: int = Field(20_000, ge=0, description="cleanlab looks at this many recent labeled interactions")
    full_chunk_h: float = Field(24.0, gt=0, description="a full relabel computes this much served time at once")
    confidence_threshold: float = Field(0.7, gt=0, le=1)
    audit_rate: float = Field(0.01, ge=0, le=1)
    budget_uncertain: int = Field(1000, ge=0)
    budget_suspect: int = Field(1000, ge=0)
    budget_conflict: int = Field(1000, ge=0)
    budget_audit: int = Field(500, ge=0)
    budget_adjudication: int = Field(200, ge=0)
    agreement_threshold: float = Field(0.75, ge=0, le=1, description="annotators agreeing less: adjudication")
    folds: int = Field(5, ge=2)
    seed: int = 0
    lake: LakeSettings = Field(default_factory=LakeSettings)

    def options(self) -> LabelerOptions:
        """The pure pipeline's options (imported lazily: the labeling stack is heavy)."""
        from flywheel_feedback.labeling.routing import RoutingConfig
        from flywheel_feedback.services.labeler.pipeline import LabelerOptions

        return LabelerOptions(
            abandon_window=timedelta(seconds=self.abandon_window_s),
            horizon=timedelta(hours=self.horizon_h),
            model_window=timedelta(days=self.model_window_days),
            cleanlab_rows=self.cleanlab_rows,
            with_cleanlab=self.cleanlab_rows > 0,
            chunk=timedelta(hours=self.full_chunk_h),
            routing=RoutingConfig(
                confidence_threshold=self.confidence_threshold,
                audit_rate=self.audit_rate,
                budgets={
                    "uncertain": self.budget_uncertain,
                    "suspect": self.budget_suspect,
                    "conflict": self.budget_conflict,
                    "audit": self.budget_audit,
                    "adjudication": self.budget_adjudication,
                },
                agreement_threshold=self.agreement_threshold,
            ),
            folds=self.folds,
            seed=self.seed,
        )


class SliceSettings(BaseSettings):
    """Eval slices and training exports (`flywheel slices`, `flywheel export`, `load_slice` in services/slices)."""

    model_config = settings_config("FLYWHEEL_SLICES_")

    definitions_dir: Path = Field(Path("slices"), description="a folder of slice definitions, one TOML file each")
    announce: bool = Field(True, description="announce each published version on Kafka")
    announce_topic: str = "flywheel.slices"
    announce_timeout_s: float = Field(30.0, gt=0, description="longest wait for Kafka to acknowledge an announcement")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)


class ModelSettings(BaseSettings):
    """Model change alarms (`flywheel models alarms`, and `flywheel serve` every `interval_s`)."""

    model_config = settings_config("FLYWHEEL_MODELS_")

    false_alarms_per_week: float = Field(0.01, gt=0, lt=100, description="false alarms per model per week")
    window_hours: float = Field(1.0, gt=0, description="the event-time window of the behaviour series")
    warmup_windows: int = Field(36, ge=2, description="windows pooled into a series' baseline")
    interval_s: float = Field(900.0, gt=0, description="how often `serve` looks for model changes")
    lookback_days: float = Field(14.0, gt=0, description="how much recent traffic the series cover")
    # where alarms are POSTed as JSON (unset: none). May hold a token in its query, so never logged.
    webhook_url: SecretStr | None = None
    webhook_timeout_s: float = Field(10.0, gt=0)

    def detector(self) -> DetectorConfig:
        from flywheel_feedback.labeling.changes import DetectorConfig

        return DetectorConfig(false_alarms_per_week=self.false_alarms_per_week,
                              window=timedelta(hours=self.window_hours), warmup_windows=self.warmup_windows)

class GatewaySettings(BaseSettings):
    """The HTTP gateway (`flywheel gateway`, and a route of `flywheel serve`): events over HTTP onto Kafka.

    Keys (keys.py) come from SERVER_KEYS / BROWSER_KEYS (JSON lists) and from KEYS_FILE (TOML); the events
    topic and the event size limit are capture's, so the gateway accepts exactly what capture will keep."""

    model_config = settings_config("FLYWHEEL_GATEWAY_")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    topic: str = Field("flywheel.events", validation_alias=AliasChoices("topic", "FLYWHEEL_CAPTURE_TOPIC"))
    max_event_bytes: int = Field(
        256 * 1024, ge=64, validation_alias=AliasChoices("max_event_bytes", "FLYWHEEL_CAPTURE_MAX_EVENT_BYTES")
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest request body (413 above)")
    max_batch_events: int = Field(1000, ge=1, description="most events in one request (413 above)")
    max_in_flight_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="request bytes held until Kafka acknowledges them (503 above)"
    )
    max_in_flight_requests: int = Field(1000, ge=1, description="requests in hand at once (503 above)")
    ack_timeout_s: float = Field(5.0, gt=0, description="longest wait for Kafka's acknowledgement before a 503")
    stall_s: float = Field(
        2.0, gt=0, description="while an acknowledgement is this late, new requests get a 503 (Kafka slow or down)"
    )
    retry_after_s: int = Field(2, ge=1, description="the Retry-After of a 503")
    linger_ms: int = Field(
        0, ge=0, description="the producer's wait to fill a batch (batches fill anyway while a request is in flight)"
    )
    remember_events: int = Field(
        200_000, ge=0, description="acknowledged event ids kept, so a client's retry is not produced twice"
    )
    server_keys: list[ServerKey] = Field(default_factory=list)
    browser_keys: list[BrowserKey] = Field(default_factory=list)
    keys_file: Path | None = Field(None, description="a TOML file of [[server]] and [[browser]] keys")
    token_secret: SecretStr | None = Field(None, description="verifies browser feedback's interaction tokens")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    def keyring(self) -> KeyRing:
        """Every key from the settings and the keys file (read now)."""
        keys: list[Key] = [*self.server_keys, *self.browser_keys]
        if self.keys_file is not None:
            keys.extend(load_keys_file(self.keys_file))
        return KeyRing(keys, token_secret=self.token_secret)

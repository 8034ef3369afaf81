"""Settings for flywheel's processes, read from the environment (or a .env file) in main().

Nothing here reads the environment at import time. Secrets are SecretStr and never logged.
S3 credentials are not settings: boto3's standard chain finds them (env, files, roles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.lake.store import ObjectStore, open_store


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_KAFKA_", frozen=True, extra="ignore")

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
    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_LAKE_", frozen=True, extra="ignore")

    url: str = "./lake"
    # For S3-compatible servers; credentials come from boto3's chain (AWS_ACCESS_KEY_ID, ...).
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    def open(self) -> ObjectStore:
        options: dict[str, Any] = {}
        if self.s3_endpoint_url:
            options["endpoint_url"] = self.s3_endpoint_url
        if self.s3_region:
            options["region_name"] = self.s3_region
        return open_store(self.url, **options) if self.url.startswith("s3://") else open_store(self.url)


class CaptureSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_CAPTURE_", frozen=True, extra="ignore")

    topic: str = "flywheel.events"
    dlq_topic: str = "flywheel.events.dlq"
    group_id: str = "flywheel-capture"
    batch_size: int = Field(50_000, ge=1, description="events per partition before a file is written")
    flush_interval_s: float = Field(5.0, gt=0, description="longest time an event waits in memory")
    poll_records: int = Field(5_000, ge=1)
    max_event_bytes: int = Field(256 * 1024, ge=64)
    compression_level: int = Field(1, ge=1, le=22)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)

"""Where the lake lives: a local directory or an S3 prefix, behind one small interface.

The store knows nothing about Parquet; it moves bytes under deterministic keys. Writes are
atomic (a temp file renamed into place locally; a single PUT on S3), so readers never see
a partial object.

Local files get the modes every other file of the process gets: 0666 and 0777 (folders) less the process's
umask, the same rule delta-rs follows for the files it writes. A team sharing a lake on a local or network disk
sets a group-readable umask for the processes that write it (`umask 0027`, systemd's `UMask=`, or
FLYWHEEL_LAKE_UMASK, which `LakeSettings.open` applies to the process).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ObjectStore(Protocol):
    """Bytes under '/'-separated keys."""

    @property
    def url(self) -> str: ...

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str) -> list[str]: ...
    def local_path(self, key: str) -> Path | None: ...
    def table_uri(self, name: str) -> str: ...
    def storage_options(self) -> dict[str, str] | None: ...


@dataclass(frozen=True)
class LocalStore:
    root: Path

    @property
    def url(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: a crash leaves a dot-file that readers skip,
        # never a truncated file under the real name. Created as open(2) creates files (0666 less the umask),
        # not as mkstemp does (0600, whatever the umask).
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}{path.suffix}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.exists():
            return []
        paths: Iterator[Path] = base.rglob("*") if base.is_dir() else iter([base])
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in paths
            if p.is_file() and not p.name.startswith(".")
        )

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def table_uri(self, name: str) -> str:
        """Where a Delta table lives (a folder is a table)."""
        return str(self._path(name))

    def storage_options(self) -> dict[str, str] | None:
        return None


class S3Store:
    """An S3 prefix, reached with boto3's standard credential chain (or explicit options)."""

    def __init__(self, url: str, *, client: S3Client | None = None, **client_options: Any) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"expected an s3://bucket/prefix URL, got {url!r}")
        self._url = url
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._options = client_options
        if client is None:
            import boto3

            client = boto3.client("s3", **client_options)
        self.client = client

    @property
    def url(self) -> str:
        return self._url

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(k for k in keys if not k.rsplit("/", 1)[-1].startswith("."))

    def local_path(self, key: str) -> Path | None:
        return None

    def with_timeouts(self, seconds: float) -> S3Store:
        """The same prefix through a client that gives up after `seconds` and does not retry (for health
        probes: boto3's defaults wait a minute per attempt and retry)."""
        from botocore.config import Config

        quick = Config(connect_timeout=seconds, read_timeout=seconds, retries={"total_max_attempts": 1})
        base = self._options.get("config")
        options = {**self._options, "config": base.merge(quick) if base is not None else quick}
        if not self._options:  # a store made around a client: the same endpoint and region
            options.update(endpoint_url=self.client.meta.endpoint_url, region_name=self.client.meta.region_name)
        import boto3

        client = boto3.client("s3", **options)
        return S3Store(self._url, client=client)

    def table_uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"

    def storage_options(self) -> dict[str, str]:
        """The same server and credentials for delta-rs (it does not use boto3): boto3's chain resolves them,
        so explicit options, the environment and profiles all work. delta-rs commits with conditional PUTs
        (If-None-Match), so concurrent writers need no lock service."""
        import boto3

        session = boto3.Session(
            aws_access_key_id=self._options.get("aws_access_key_id"),
            aws_secret_access_key=self._options.get("aws_secret_access_key"),
            aws_session_token=self._options.get("aws_session_token"),
            region_name=self._options.get("region_name"),
        )
        options: dict[str, str] = {"AWS_REGION": session.region_name or self.client.meta.region_name or "us-east-1"}
        credentials = session.get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            options["AWS_ACCESS_KEY_ID"] = frozen.access_key or ""
            options["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key or ""
            if frozen.token:
                options["AWS_SESSION_TOKEN"] = frozen.token
        endpoint = self._options.get("endpoint_url") or self.client.meta.endpoint_url
        if endpoint and not endpoint.startswith("https://s3."):
            options["AWS_ENDPOINT_URL"] = endpoint
            options["AWS_ALLOW_HTTP"] = str(endpoint.startswith("http://")).lower()
        return options


def open_store(url: str | Path, **s3_options: Any) -> ObjectStore:
    """A store for a local path or an s3:// URL. S3 options go to boto3.client (endpoint_url, ...)."""
    text = str(url)
    if text.startswith("s3://"):
        return S3Store(text, **s3_options)
    if "://" in text:
        raise ValueError(f"expected a local path or an s3:// URL, got {text!r}")
    return LocalStore(Path(text).expanduser().resolve())

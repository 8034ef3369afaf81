"""Immutable versions in the lake: `<root>/v<k>/` holds data files and a manifest.json written last.

Roots are `slices/<name>` for eval slices and `exports/<kind>` for training exports. The manifest is the
commit point: a version exists once its manifest does, and a published version is never written again
(publishing over it raises). Files written before a crash, without a manifest, are not a version and are
overwritten by the next attempt. The manifest records each file's SHA-256 and size; the version's
`content_hash` is its data file's SHA-256, and reading verifies it, so a version that changed after it was
published (or a truncated download) is an error, not data.

Known limit: two publishers racing for the same new version number on S3 both pass the existence check;
run one renewal per slice at a time (the CLI and the bench do).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping
from typing import Any, Final

import polars as pl

from flywheel_feedback.services.errors import FlywheelError
from flywheel_feedback.services.lake.store import ObjectStore

MANIFEST: Final = "manifest.json"
DATA: Final = "data.parquet"
FORMAT: Final = 1
SLICES_PREFIX: Final = "slices"
EXPORTS_PREFIX: Final = "exports"
_VERSION_KEY = re.compile(r"^(?P<root>.+)/v(?P<version>[1-9][0-9]*)/manifest\.json$")


class VersionExistsError(FlywheelError, RuntimeError):
    """Publishing over a published version."""


class IntegrityError(FlywheelError, RuntimeError):
    """A version's file does not match its manifest."""


class VersionNotFoundError(FlywheelError, LookupError):
    """No such version (the message lists the ones there are)."""


def slice_root(name: str) -> str:
    return f"{SLICES_PREFIX}/{name}"


def export_root(kind: str) -> str:
    return f"{EXPORTS_PREFIX}/{kind}"


def version_key(root: str, version: int, name: str) -> str:
    return f"{root}/v{version}/{name}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd", statistics=True)
    return buf.getvalue()


def list_versions(store: ObjectStore, root: str) -> list[int]:
    """Published versions under `root`, ascending."""
    found = []
    for key in store.list(f"{root}/"):
        match = _VERSION_KEY.match(key)
        if match and match.group("root") == root:
            found.append(int(match.group("version")))
    return sorted(found)


def list_roots(store: ObjectStore, prefix: str) -> dict[str, list[int]]:
    """Every root under `prefix` (slices or exports) with its published versions."""
    roots: dict[str, list[int]] = {}
    for key in store.list(f"{prefix}/"):
        match = _VERSION_KEY.match(key)
        if match and match.group("root").count("/") == prefix.count("/") + 1:
            roots.setdefault(match.group("root"), []).append(int(match.group("version")))
    return {root: sorted(v) for root, v in sorted(roots.items())}


def latest_version(store: ObjectStore, root: str) -> int | None:
    versions = list_versions(store, root)
    return versions[-1] if versions else None


def resolve(store: ObjectStore, root: str, version: int | None) -> int:
    """`version`, checked to exist, or the latest one."""
    versions = list_versions(store, root)
    if version is None:
        if not versions:
            raise VersionNotFoundError(f"nothing published under {root} in {store.url}")
        return versions[-1]
    if version not in versions:
        raise VersionNotFoundError(f"{root} has no version {version} in {store.url}; published: {versions}")
    return version


def read_manifest(store: ObjectStore, root: str, version: int) -> dict[str, Any]:
    key = version_key(root, version, MANIFEST)
    if not store.exists(key):
        raise VersionNotFoundError(f"{root} has no version {version} in {store.url}; published: "
                                   f"{list_versions(store, root)}")
    manifest: dict[str, Any] = json.loads(store.get(key))
    return manifest


def publish(
    store: ObjectStore, root: str, version: int, files: Mapping[str, bytes], manifest: Mapping[str, Any]
) -> dict[str, Any]:
    """Write the files, then the manifest (with their hashes); returns the manifest as written."""
    if DATA not in files:
        raise ValueError(f"expected a {DATA} among the files, got {sorted(files)}")
    if MANIFEST in files:
        raise ValueError(f"{MANIFEST} is written by publish itself")
    manifest_key = version_key(root, version, MANIFEST)
    if store.exists(manifest_key):
        raise VersionExistsError(f"{root} v{version} is already published in {store.url}; versions are immutable")
    listed: dict[str, dict[str, Any]] = {}
    for name, data in files.items():
        key = version_key(root, version, name)
        store.put(key, data)
        listed[name] = {"key": key, "sha256": sha256(data), "bytes": len(data)}
    written = {
        **manifest,
        "format": FORMAT,
        "version": version,
        "content_hash": f"sha256:{listed[DATA]['sha256']}",
        "files": listed,
    }
    store.put(manifest_key, json.dumps(written, indent=2, sort_keys=True, default=str).encode())
    return written


def read_file(store: ObjectStore, manifest: Mapping[str, Any], name: str, *, verify: bool = True) -> bytes:
    """A version's file, checked against the manifest's hash and size."""
    entry = manifest.get("files", {}).get(name)
    if entry is None:
        raise VersionNotFoundError(f"v{manifest.get('version')} has no file {name!r}; it has "
                                   f"{sorted(manifest.get('files', {}))}")
    path = store.local_path(entry["key"])
    data = path.read_bytes() if path is not None else store.get(entry["key"])
    if verify:
        digest = sha256(data)
        if digest != entry["sha256"] or len(data) != entry["bytes"]:
            raise IntegrityError(
                f"{entry['key']} in {store.url} does not match its manifest: sha256 {digest} ({len(data)} bytes), "
                f"expected {entry['sha256']} ({entry['bytes']} bytes)"
            )
    return data


def read_frame(
    store: ObjectStore, manifest: Mapping[str, Any], name: str = DATA, *, verify: bool = True,
    columns: list[str] | None = None,
) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(read_file(store, manifest, name, verify=verify)), columns=columns)


def verify_version(store: ObjectStore, root: str, version: int) -> list[str]:
    """Problems with a published version (empty: every file matches its manifest)."""
    manifest = read_manifest(store, root, version)
    problems = []
    for name, entry in manifest.get("files", {}).items():
        if not store.exists(entry["key"]):
            problems.append(f"{entry['key']} is missing from {store.url}")
            continue
        try:
            read_file(store, manifest, name, verify=True)
        except IntegrityError as e:
            problems.append(str(e))
    if manifest.get("content_hash") != f"sha256:{manifest.get('files', {}).get(DATA, {}).get('sha256')}":
        problems.append(f"{root} v{version}: content_hash does not name the data file's hash")
    return problems

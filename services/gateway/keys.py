"""Who may send events over HTTP: per-app server keys and publishable browser keys.

A server key (kept on the product's servers) may send every event type; if it names an app, the interactions
it sends must be that app's. A browser key is publishable (it ships in the page's JavaScript): it may send
feedback events only, only from the origins listed for it (CORS), under its own rate limit, and each event must
carry an interaction token the product's server issued (tokens.py). Keys are looked up by their SHA-256 digest,
so no comparison runs over the secret itself, and they are SecretStr everywhere: no log or repr shows one.

Keys come from settings (FLYWHEEL_GATEWAY_SERVER_KEYS / _BROWSER_KEYS as JSON lists) or from a TOML file
(FLYWHEEL_GATEWAY_KEYS_FILE) with `[[server]]` and `[[browser]]` tables of the same fields.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError, field_validator

KEY_HEADER = "x-flywheel-key"
KeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
MIN_KEY_CHARS = 16
_ORIGIN = r"^https?://[^/\s?#]+$"


class _Key(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: KeyId = Field(description="names the key in metrics and logs (never the key itself)")
    key: SecretStr
    app: str | None = Field(None, description="if set, interactions sent with this key must be this app's")

    @field_validator("key")
    @classmethod
    def _long_enough(cls, key: SecretStr) -> SecretStr:
        if len(key.get_secret_value()) < MIN_KEY_CHARS:
            raise ValueError(f"a key needs at least {MIN_KEY_CHARS} characters")
        return key


class ServerKey(_Key):
    kind: Literal["server"] = "server"


class BrowserKey(_Key):
    kind: Literal["browser"] = "browser"
    origins: list[Annotated[str, StringConstraints(pattern=_ORIGIN, to_lower=True)]] = Field(
        min_length=1, description="the page origins (scheme://host[:port]) allowed to send with this key"
    )
    rate_per_s: float = Field(10.0, gt=0, description="events per second this key may send, on average")
    burst: int = Field(100, ge=1, description="events this key may send at once")
    token_secret: SecretStr | None = Field(
        None, description="verifies its interaction tokens (default: FLYWHEEL_GATEWAY_TOKEN_SECRET)"
    )


Key = ServerKey | BrowserKey


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: `Authorization: Bearer <key>`, else `X-Flywheel-Key` (None: neither; an
    Authorization header of another scheme presents the empty key, which no key matches)."""
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    return headers.get(KEY_HEADER)


def digest(presented: str) -> bytes:
    return hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    """Every key of a gateway, found by the key a request presents."""

    def __init__(self, keys: Iterable[Key], *, token_secret: SecretStr | None = None) -> None:
        self._by_digest: dict[bytes, Key] = {}
        self._token_secrets: dict[str, bytes] = {}
        ids: set[str] = set()
        for key in keys:
            if key.id in ids:
                raise ValueError(f"two gateway keys have the id {key.id!r}")
            ids.add(key.id)
            found = digest(key.key.get_secret_value())
            if found in self._by_digest:
                raise ValueError(f"gateway keys {self._by_digest[found].id!r} and {key.id!r} are the same key")
            self._by_digest[found] = key
            if isinstance(key, BrowserKey):
                secret = key.token_secret or token_secret
                if secret is None or not secret.get_secret_value():
                    raise ValueError(f"browser key {key.id!r} needs a token secret: set FLYWHEEL_GATEWAY_TOKEN_SECRET "
                                     "or the key's token_secret")
                self._token_secrets[key.id] = secret.get_secret_value().encode()
        self.origins = frozenset(o for k in self._by_digest.values() if isinstance(k, BrowserKey) for o in k.origins)

    def __len__(self) -> int:
        return len(self._by_digest)

    def find(self, presented: str) -> Key | None:
        return self._by_digest.get(digest(presented))

    def token_secret(self, key: BrowserKey) -> bytes:
        return self._token_secrets[key.id]


def load_keys_file(path: Path) -> list[Key]:
    """The `[[server]]` and `[[browser]]` tables of a TOML keys file."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read the gateway keys file {path}: {exc}") from exc
    unknown = set(data) - {"server", "browser"}
    if unknown:
        raise ValueError(f"{path}: expected [[server]] and [[browser]] tables, found {sorted(unknown)}")
    keys: list[Key] = []
    for kind, model in (("server", ServerKey), ("browser", BrowserKey)):
        for n, table in enumerate(data.get(kind, [])):
            try:
                keys.append(model.model_validate({**table, "kind": kind}))
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"{path}: [[{kind}]] number {n + 1}: {problems}") from None
    return keys

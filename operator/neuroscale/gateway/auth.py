"""Who is calling: API keys from a mounted Secret, a header set by a trusted proxy, or one anonymous tenant.

The tenant this module returns is the only identity the rest of the gateway uses: the cache scope, the quotas and
the chargeback figures all come from it, never from a header the client chose.

The tenants file (the `tenants.yaml` key of the Secret `spec.auth.apiKeys.secretRef` names) holds no usable
credential, only the SHA-256 of each key, so reading the Secret does not let anyone call the gateway:

    tenants:
      team-a:
        keySha256: ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
        requestsPerMinute: 600        # optional; otherwise the cascade's spec.quotas default
        tokensPerMinute: 200000       # optional; prompt + generated tokens
      team-b:
        keySha256: ["60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"]

A presented key is hashed and its digest compared with every stored digest by `hmac.compare_digest`, without
stopping at a match, so the time taken says nothing about which key or how much of one matched. The
file is re-read when it changes (a Secret volume is updated in place by the kubelet), so keys rotate without a
restart; a file that does not parse leaves the previous keys in force and is counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from neuroscale.gateway.config import AuthConfig
from neuroscale.gateway.protocol import OpenAIError

log = logging.getLogger(__name__)

TENANT_NAME = r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$"
_TENANT_NAME = re.compile(TENANT_NAME)
DEFAULT_TENANT = "default"
# The metric label of tenants past AuthConfig.max_tenants (trusted_header only: API-key tenants are a fixed list).
OTHER_TENANT = "other"
_SHA256_HEX = r"^[0-9a-f]{64}$"


@dataclass(frozen=True)
class Tenant:
    """An authenticated caller. `label` is its name in metrics: the name, or `other` past the cardinality bound."""

    name: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    label: str = ""

    @property
    def metric_label(self) -> str:
        return self.label or self.name


class _TenantEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key_sha256: list[str] = Field(alias="keySha256", min_length=1)
    requests_per_minute: int | None = Field(default=None, ge=1, alias="requestsPerMinute")
    tokens_per_minute: int | None = Field(default=None, ge=1, alias="tokensPerMinute")

    @field_validator("key_sha256")
    @classmethod
    def _hex_digests(cls, digests: list[str]) -> list[str]:
        normalised = [digest.strip().lower() for digest in digests]
        for digest in normalised:
            if not re.match(_SHA256_HEX, digest):
                raise ValueError("each keySha256 entry must be 64 hex characters (sha256sum of the key)")
        return normalised


class TenantsFile(BaseModel):
    """The document in the Secret: tenant name → its key digests and optional limits."""

    model_config = ConfigDict(extra="forbid")

    tenants: dict[str, _TenantEntry] = Field(default_factory=dict)

    @field_validator("tenants")
    @classmethod
    def _names_and_unique_keys(cls, tenants: dict[str, _TenantEntry]) -> dict[str, _TenantEntry]:
        owners: dict[str, str] = {}
        for name, entry in tenants.items():
            if not _TENANT_NAME.match(name):
                raise ValueError(f"tenant name {name!r} must be lower-case letters, digits, '-', '_' or '.' (≤ 63)")
            for digest in entry.key_sha256:
                if digest in owners and owners[digest] != name:
                    raise ValueError(f"one key is listed for both {owners[digest]!r} and {name!r}")
                owners[digest] = name
        return tenants


def parse_tenants(text: str) -> list[tuple[bytes, Tenant]]:
    """(key digest, tenant) pairs from the tenants file's text; ValueError says what is wrong (never a digest)."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
        document = TenantsFile.model_validate(data or {})
    except yaml.YAMLError as error:
        raise ValueError(f"not valid YAML or JSON: {error}") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in error.errors())
        raise ValueError(problems) from None
    keys = []
    for name, entry in document.tenants.items():
        tenant = Tenant(name, entry.requests_per_minute, entry.tokens_per_minute)
        keys.extend((bytes.fromhex(digest), tenant) for digest in entry.key_sha256)
    return keys


def bearer_key(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer KEY` header (what every OpenAI SDK sends)."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


def unauthorized(message: str, code: str = "invalid_api_key") -> OpenAIError:
    # OpenAI answers a missing or wrong key with 401, type invalid_request_error, code invalid_api_key.
    return OpenAIError(401, message, code=code, headers={"WWW-Authenticate": 'Bearer realm="neuroscale"'})


class KeyFile:
    """The tenants file, re-read when its identity or size or modification time changes."""

    def __init__(self, path: str, on_reload_failure: Callable[[], None] = lambda: None,
                 on_load: Callable[[frozenset[str]], None] = lambda names: None) -> None:
        self.path = Path(path)
        self._on_load = on_load
        self.tenants: list[tuple[bytes, Tenant]] = []
        self.names: frozenset[str] = frozenset()
        self._seen: tuple[int, int, int] | None = None
        self._missing = False
        self._on_reload_failure = on_reload_failure

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when new keys took effect."""
        try:
            info = os.stat(self.path)  # follows the kubelet's ..data symlink, so a swapped Secret shows as a change
        except OSError as error:
            if not self._missing:  # said once, not at every check while the Secret is absent
                log.warning("tenants file %s unreadable (%s); %s", self.path, error.strerror,
                            "keeping the keys loaded before" if self.tenants else "every request gets 401")
                self._missing = True
            self._seen = None
            return False
        self._missing = False
        seen = (info.st_ino, info.st_size, info.st_mtime_ns)
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            tenants = parse_tenants(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            self._on_reload_failure()
            log.error("tenants file %s rejected, %s: %s", self.path,
                      "keeping the keys loaded before" if self.tenants else "every request gets 401", error)
            return False
        self.tenants = tenants
        self.names = frozenset(tenant.name for _, tenant in tenants)
        log.info("tenants file %s loaded: %d tenants, %d keys", self.path, len(self.names), len(tenants))
        self._on_load(self.names)
        return True

    async def watch(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.refresh()


class Authenticator:
    """Turns a request's headers and peer address into a Tenant, or raises an OpenAI-style 401."""

    def __init__(self, config: AuthConfig, registry: CollectorRegistry,
                 on_tenants: Callable[[frozenset[str]], None] = lambda names: None) -> None:
        """`on_tenants` hears the tenants every time the tenants file is (re)loaded."""
        self.config = config
        self.failures = Counter(
            "neuroscale_gateway_auth_failures", "Requests refused with 401, by code (invalid_api_key|untrusted_source|"
            "missing_tenant).", ["code"], registry=registry,
        )
        self.rejected_files = Counter(
            "neuroscale_gateway_tenants_file_rejected", "Versions of the tenants file that did not parse (the keys "
            "loaded before stayed in force).", registry=registry,
        )
        self.keys = KeyFile(config.keys_file, self.rejected_files.inc, on_tenants) \
            if config.mode == "api_keys" and config.keys_file else None
        self._networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in config.proxy_cidrs)
        self._shared_secret = os.environ.get(config.shared_secret_env or "", "").encode() \
            if config.shared_secret_env else None
        if config.mode == "trusted_header" and config.shared_secret_env and not self._shared_secret:
            log.error("environment variable %s (the proxy's shared secret) is empty: every request gets 401",
                      config.shared_secret_env)
        self._labels: dict[str, str] = {}
        self._default = Tenant(DEFAULT_TENANT)

    def start(self) -> asyncio.Task[None] | None:
        """Load the keys and keep them fresh; the caller cancels the task on shutdown."""
        if self.keys is None:
            return None
        self.keys.refresh()
        return asyncio.create_task(self.keys.watch(self.config.reload_seconds))

    @property
    def known_tenants(self) -> frozenset[str]:
        """Tenants that can appear in metrics before any request (API keys: the file's; none: default)."""
        if self.keys is not None:
            return self.keys.names
        return frozenset({DEFAULT_TENANT}) if self.config.mode == "none" else frozenset()

    def authenticate(self, headers: Mapping[str, str], peer: str | None) -> Tenant:
        mode = self.config.mode
        try:
            if mode == "api_keys":
                return self._by_key(headers.get("Authorization"))
            if mode == "trusted_header":
                return self._by_header(headers, peer)
        except OpenAIError as error:
            self.failures.labels(error.code or "unauthorized").inc()
            raise
        return self._default

    def _by_key(self, authorization: str | None) -> Tenant:
        key = bearer_key(authorization)
        if key is None:
            raise unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.")
        assert self.keys is not None
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for stored, tenant in self.keys.tenants:
            if hmac.compare_digest(digest, stored):
                found = tenant
        if found is None:
            raise unauthorized("Incorrect API key provided.")
        return found

    def _by_header(self, headers: Mapping[str, str], peer: str | None) -> Tenant:
        if self._networks and not self._from_proxy(peer):
            raise unauthorized("This gateway only accepts requests through its authenticating proxy.",
                               code="untrusted_source")
        if self._shared_secret is not None:
            presented = (headers.get(self.config.shared_secret_header or "") or "").encode()
            if not self._shared_secret or not hmac.compare_digest(presented, self._shared_secret):
                raise unauthorized("This gateway only accepts requests through its authenticating proxy.",
                                   code="untrusted_source")
        name = (headers.get(self.config.tenant_header or "") or "").strip().lower()
        if not _TENANT_NAME.match(name):
            raise unauthorized("The authenticating proxy named no valid tenant.", code="missing_tenant")
        return Tenant(name, label=self._label(name))

    def _from_proxy(self, peer: str | None) -> bool:
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def _label(self, name: str) -> str:
        label = self._labels.get(name)
        if label is None:
            label = name if len(self._labels) < self.config.max_tenants else OTHER_TENANT
            if label == name:
                self._labels[name] = name
        return label

"""Tenants through the real gateway, with a real Redis on loopback: API keys from a tenants file (401 without a
valid key, rotation without a restart, a tenants file that does not parse leaves the old keys), two tenants never
sharing a cached answer, a forged tenant header ignored under API keys; the trusted-header mode (proxy range,
shared secret); token and request quotas enforced across two gateway processes (429 with Retry-After and
x-ratelimit-* headers, the other tenant unaffected); a Redis outage failing open and counted; the chargeback
counters equal to the tokens the stub tiers reported, and dollars from each tier's price; `neuroscale usage`
and the operator's status summary reading them back from a real Prometheus scraping the gateway."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from neuroscale.autoscale.metrics import MetricsSource, PrometheusSettings
from neuroscale.cli import main as cli_main
from neuroscale.controllers.cascade_usage import read_usage
from tests.support.gateway_harness import gateway_process, make_config, openai_tier, serve_gateway
from tests.support.prometheus_server import PrometheusServer, pod_target
from tests.support.stub_upstream import StubUpstream

KEYS = {"team-a": "sk-team-a-0001", "team-b": "sk-team-b-0001"}
QUESTION = {"model": "cascade", "temperature": 0, "messages": [{"role": "user", "content": "Capital of France?"}]}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def tenants_document(**limits: dict[str, int]) -> str:
    tenants = {name: {"keySha256": [digest(key)], **limits.get(name.replace("-", "_"), {})}
               for name, key in KEYS.items()}
    return yaml.safe_dump({"tenants": tenants})


@pytest.fixture
def tenants_file(tmp_path: Path) -> Path:
    path = tmp_path / "tenants.yaml"
    path.write_text(tenants_document())
    return path


def api_keys(path: Path) -> dict[str, Any]:
    return {"mode": "api_keys", "keys_file": str(path), "reload_seconds": 0.05}


async def ask(http: aiohttp.ClientSession, gateway_url: str, key: str | None, body: dict | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    sent = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    async with http.post(gateway_url + "/v1/chat/completions", json=body or QUESTION, headers=sent) as response:
        text = await response.text()
        return response.status, dict(response.headers), {} if body and body.get("stream") else json.loads(text)


async def test_missing_or_wrong_key_gets_an_openai_401(http: aiohttp.ClientSession, small: StubUpstream,
                                                        tenants_file: Path) -> None:
    config = make_config([openai_tier("small", small.base_url)], auth=api_keys(tenants_file))
    async with serve_gateway(config) as gateway:
        for key in (None, "sk-unknown", KEYS["team-a"] + "x"):
            status, headers, body = await ask(http, gateway.url, key)
            assert status == 401 and body["error"]["code"] == "invalid_api_key", body
            assert body["error"]["type"] == "invalid_request_error" and headers["WWW-Authenticate"].startswith("Bearer")
        async with http.get(gateway.url + "/v1/models") as response:
            assert response.status == 401
        async with http.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {KEYS['team-b']}"}) as ok:
            assert ok.status == 200
        status, _, _ = await ask(http, gateway.url, KEYS["team-a"])
        assert status == 200 and small.requests, "a valid key is served"
        assert gateway.metric("neuroscale_gateway_auth_failures_total", code="invalid_api_key") == 4


async def test_keys_rotate_without_a_restart(http: aiohttp.ClientSession, small: StubUpstream, tenants_file: Path) -> None:
    config = make_config([openai_tier("small", small.base_url)], auth=api_keys(tenants_file))
    async with serve_gateway(config) as gateway:
        assert (await ask(http, gateway.url, KEYS["team-a"]))[0] == 200
        new_key = "sk-team-a-0002"
        # What the kubelet does with a Secret volume: the new content replaces the file in one rename.
        staged = tenants_file.with_suffix(".new")
        staged.write_text(yaml.safe_dump({"tenants": {"team-a": {"keySha256": [digest(new_key)]}}}))
        staged.replace(tenants_file)
        await eventually(lambda: ask(http, gateway.url, new_key), lambda answer: answer[0] == 200)
        assert (await ask(http, gateway.url, KEYS["team-a"]))[0] == 401, "the rotated-out key no longer works"

        tenants_file.write_text("tenants: [not, a, mapping]")
        await eventually(lambda: asyncio.sleep(0.05, gateway.metric("neuroscale_gateway_tenants_file_rejected_total")),
                         lambda rejected: rejected == 1)
        assert (await ask(http, gateway.url, new_key))[0] == 200, "a broken file leaves the previous keys in force"


async def test_two_tenants_never_share_a_cached_answer_and_forged_headers_are_ignored(
    http: aiohttp.ClientSession, small: StubUpstream, tenants_file: Path, redis_url: str
) -> None:
    cache = {"mode": "exact", "backend": "redis", "redis_url": redis_url}
    config = make_config([openai_tier("small", small.base_url)], auth=api_keys(tenants_file), cache=cache)
    async with serve_gateway(config) as gateway:
        _, first_a, _ = await ask(http, gateway.url, KEYS["team-a"])
        await eventually(lambda: ask(http, gateway.url, KEYS["team-a"]),
                         lambda answer: answer[1]["x-neuroscale-cache"] == "exact")
        # team-b claims to be team-a in every header a client could try: its key alone decides, so team-a's cached
        # answer is not served to it.
        forged = {"x-tenant": "team-a", "x-tenant-id": "team-a", "x-neuroscale-tenant": "team-a"}
        _, first_b, _ = await ask(http, gateway.url, KEYS["team-b"], headers=forged)
        assert first_a["x-neuroscale-cache"] == first_b["x-neuroscale-cache"] == "miss"
        assert first_b["x-neuroscale-tier"] == "small" and len(small.requests) == 2
        status, _, _ = await ask(http, gateway.url, None, headers=forged)
        assert status == 401, "headers without a key name no tenant"
        _, again_b, _ = await eventually(lambda: ask(http, gateway.url, KEYS["team-b"]),
                                         lambda answer: answer[1]["x-neuroscale-cache"] == "exact")
        assert len(small.requests) == 2, "each tenant's second ask was its own cache hit"
        assert gateway.metric("neuroscale_gateway_tenant_requests_total", tenant="team-b", tier="small") == 1
        assert gateway.metric("neuroscale_gateway_tenant_cache_hits_total", tenant="team-b") >= 1


async def test_trusted_header_needs_the_proxy(http: aiohttp.ClientSession, small: StubUpstream,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_SECRET", "s3cret")
    auth = {"mode": "trusted_header", "tenant_header": "x-tenant", "proxy_cidrs": ["127.0.0.0/8"],
            "shared_secret_header": "x-proxy-secret", "shared_secret_env": "PROXY_SECRET"}
    async with serve_gateway(make_config([openai_tier("small", small.base_url)], auth=auth)) as gateway:
        proxy = {"x-proxy-secret": "s3cret"}
        assert (await ask(http, gateway.url, None, headers={**proxy, "x-tenant": "Team-C"}))[0] == 200
        status, _, body = await ask(http, gateway.url, None, headers={"x-proxy-secret": "guess", "x-tenant": "team-c"})
        assert status == 401 and body["error"]["code"] == "untrusted_source"
        status, _, body = await ask(http, gateway.url, None, headers=proxy)
        assert status == 401 and body["error"]["code"] == "missing_tenant"
        assert gateway.metric("neuroscale_gateway_tenant_requests_total", tenant="team-c", tier="small") == 1
    outside = {**auth, "proxy_cidrs": ["10.0.0.0/8"]}
    async with serve_gateway(make_config([openai_tier("small", small.base_url)], auth=outside)) as gateway:
        status, _, body = await ask(http, gateway.url, None, headers={"x-proxy-secret": "s3cret", "x-tenant": "team-c"})
        assert status == 401 and body["error"]["code"] == "untrusted_source"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_token_quota_holds_across_two_gateway_processes(
    http: aiohttp.ClientSession, small: StubUpstream, tenants_file: Path, redis_url: str
) -> None:
    tenants_file.write_text(tenants_document(team_a={"tokensPerMinute": 10}))
    config = make_config([openai_tier("small", small.base_url)], auth=api_keys(tenants_file),
                         quotas={"redis_url": redis_url, "key_prefix": "quota-test"})
    async with serve_gateway(config) as first, gateway_process(config) as second:
        other = second.url
        status, headers, _ = await ask(http, first.url, KEYS["team-a"])
        assert status == 200 and headers["x-ratelimit-limit-tokens"] == "10"
        assert headers["x-ratelimit-remaining-tokens"] == "10", "tokens are charged after the answer"
        used = sum(usage["total_tokens"] for usage in small.usages)
        assert used >= 10, "the stub's answer must use up the quota for this test to mean anything"

        status, headers, body = await eventually(lambda: ask(http, other, KEYS["team-a"]),
                                                 lambda answer: answer[0] == 429)
        assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert headers["x-ratelimit-remaining-tokens"] == "0" and headers["x-ratelimit-reset-tokens"].endswith("s")
        served = len(small.requests)  # 1, or 2 if the second gateway answered before the charge (50 ms) landed
        assert (await ask(http, other, KEYS["team-a"]))[0] == 429
        assert len(small.requests) == served, "a refused request never reaches a tier"

        status, headers, _ = await ask(http, other, KEYS["team-b"])
        assert status == 200 and "x-ratelimit-limit-tokens" not in headers, "team-b has no limit and is unaffected"
        status, _, _ = await ask(http, first.url, KEYS["team-a"])
        assert status == 429, "the first gateway sees the same counters"
        assert first.metric("neuroscale_gateway_quota_rejections_total", tenant="team-a", limit="tokens") == 1


async def test_request_quota_and_default_limits(http: aiohttp.ClientSession, small: StubUpstream, tenants_file: Path,
                                                redis_url: str) -> None:
    tenants_file.write_text(tenants_document(team_b={"requestsPerMinute": 1000}))
    config = make_config([openai_tier("small", small.base_url)], auth=api_keys(tenants_file),
                         quotas={"redis_url": redis_url, "requests_per_minute": 2})
    async with serve_gateway(config) as gateway:
        answers = [await ask(http, gateway.url, KEYS["team-a"]) for _ in range(3)]
        assert [status for status, _, _ in answers] == [200, 200, 429]
        assert [headers["x-ratelimit-remaining-requests"] for _, headers, _ in answers] == ["1", "0", "0"]
        assert answers[2][2]["error"]["message"].startswith("Rate limit reached for tenant 'team-a' on requests")
        assert (await ask(http, gateway.url, KEYS["team-b"]))[1]["x-ratelimit-limit-requests"] == "1000"


async def test_redis_outage_fails_open_and_is_counted(http: aiohttp.ClientSession, small: StubUpstream,
                                                       tenants_file: Path) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    config = make_config([openai_tier("small", small.base_url)], auth=api_keys(tenants_file),
                         quotas={"redis_url": nobody, "requests_per_minute": 1, "tokens_per_minute": 1,
                                 "breaker_failures": 2})
    async with serve_gateway(config) as gateway:
        statuses = [(await ask(http, gateway.url, KEYS["team-a"]))[0] for _ in range(4)]
        assert statuses == [200] * 4, "quotas that cannot be checked do not refuse anyone"
        assert gateway.metric("neuroscale_gateway_quota_unavailable_total", operation="check") == 4
        assert (await ask(http, gateway.url, "sk-wrong"))[0] == 401, "authentication never fails open"


async def test_chargeback_counts_what_the_tiers_reported(http: aiohttp.ClientSession, small: StubUpstream,
                                                         large: StubUpstream, tenants_file: Path) -> None:
    tiers = [openai_tier("small", small.base_url, price={"prompt_per_million": 0, "completion_per_million": 2.0}),
             openai_tier("large", large.base_url, price={"prompt_per_million": 3.0, "completion_per_million": 15.0})]
    config = make_config(tiers, auth=api_keys(tenants_file), cache={"mode": "exact", "backend": "memory"})
    async with serve_gateway(config) as gateway:
        await ask(http, gateway.url, KEYS["team-a"])
        await ask(http, gateway.url, KEYS["team-a"], body={**QUESTION, "stream": True, "temperature": 1})
        await ask(http, gateway.url, KEYS["team-b"], headers={"x-neuroscale-tier": "large"})
        small.behaviour.answer = "I'm sorry, I cannot help with that."  # refused: escalates to large
        await ask(http, gateway.url, KEYS["team-b"], body={**QUESTION, "temperature": 1})
        await eventually(lambda: ask(http, gateway.url, KEYS["team-a"]),
                         lambda answer: answer[1].get("x-neuroscale-tier") == "cache")

        a_small = small.usages[:2]
        b_small, b_large = small.usages[2:], large.usages
        assert len(b_small) == 1 and len(b_large) == 2

        def tokens(tenant: str, tier: str, kind: str) -> float:
            return gateway.metric("neuroscale_gateway_tenant_tokens_total", tenant=tenant, tier=tier, kind=kind)

        for tenant, tier, usages in (("team-a", "small", a_small), ("team-b", "small", b_small),
                                     ("team-b", "large", b_large)):
            assert tokens(tenant, tier, "prompt") == sum(u["prompt_tokens"] for u in usages)
            assert tokens(tenant, tier, "completion") == sum(u["completion_tokens"] for u in usages)
        assert tokens("team-a", "large", "completion") == 0
        cost_b_large = sum(u["prompt_tokens"] * 3.0 + u["completion_tokens"] * 15.0 for u in b_large) / 1e6
        assert gateway.metric("neuroscale_gateway_tenant_cost_usd_total", tenant="team-b", tier="large") == \
            pytest.approx(cost_b_large)
        assert gateway.metric("neuroscale_gateway_tenant_escalations_total", tenant="team-b", from_tier="small") == 1
        assert gateway.metric("neuroscale_gateway_tenant_requests_total", tenant="team-b", tier="large") == 2
        hits = gateway.metric("neuroscale_gateway_tenant_cache_hits_total", tenant="team-a")
        assert hits >= 1
        assert gateway.metric("neuroscale_gateway_tenant_saved_tokens_total", tenant="team-a", kind="completion") == \
            hits * a_small[0]["completion_tokens"]
        assert gateway.metric("neuroscale_gateway_tenant_cost_usd_total", tenant="team-a", tier="cache") == 0


async def eventually(call: Any, done: Any, timeout: float = 5.0) -> Any:
    """Repeat `call()` until `done(result)`; the last result otherwise fails the test."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await call()
        if done(result) or asyncio.get_running_loop().time() > deadline:
            assert done(result), f"not reached within {timeout} s: {result!r}"
            return result
        await asyncio.sleep(0.05)


async def test_usage_reads_the_chargeback_back_from_prometheus(
    http: aiohttp.ClientSession, small: StubUpstream, large: StubUpstream, tenants_file: Path,
    prometheus: PrometheusServer, capsys: pytest.CaptureFixture[str],
) -> None:
    tiers = [openai_tier("small", small.base_url),
             openai_tier("large", large.base_url, price={"prompt_per_million": 3.0, "completion_per_million": 15.0})]
    config = make_config(tiers, auth=api_keys(tenants_file))
    async with serve_gateway(config) as gateway:
        address = gateway.url.removeprefix("http://")
        # A second pod of another cascade scrapes the same figures: --cascade must leave them out.
        await asyncio.to_thread(prometheus.set_targets, [pod_target(address, "models", "chat-gateway-5d8f7b9c4-x2x9z"),
                                                         pod_target(address, "models", "chatty-gateway-5d8f7b9c4-x")])
        zero = 'neuroscale_gateway_tenant_requests_total{pod="chat-gateway-5d8f7b9c4-x2x9z",tenant="team-b"}'
        await asyncio.to_thread(prometheus.wait_for, zero, bool)  # the series exist at 0 before any request
        for _ in range(3):
            await ask(http, gateway.url, KEYS["team-a"])
        await ask(http, gateway.url, KEYS["team-b"], headers={"x-neuroscale-tier": "large"})
        seen = 'sum(neuroscale_gateway_tenant_requests_total{pod="chat-gateway-5d8f7b9c4-x2x9z"})'
        await asyncio.to_thread(prometheus.wait_for, seen, lambda r: bool(r) and float(r[0]["value"][1]) == 4)
        await asyncio.sleep(6)  # more samples: increase() extrapolates by up to a scrape interval past the last one
        code = await asyncio.to_thread(cli_main, ["usage", "--prometheus-url", prometheus.url, "--namespace",
                                                  "models", "--cascade", "chat", "--window", "1h"])
        source = MetricsSource(PrometheusSettings(url=prometheus.url))
        summary = await asyncio.to_thread(read_usage, source, "models", "chat", time.time())
        source.close()
    assert code == 0
    table = {tuple(line.split()[:2]): line.split()[2:] for line in capsys.readouterr().out.splitlines()[2:]}
    # increase() extrapolates past the samples it has, by up to half a scrape interval at each end: over a few
    # seconds of samples that is tens of percent, over a day a fraction of one.
    requests_a, prompt_a, generated_a = (float(v) for v in table[("team-a", "small")][:3])
    assert requests_a == pytest.approx(3, rel=0.3)
    assert prompt_a == pytest.approx(sum(u["prompt_tokens"] for u in small.usages), rel=0.3)
    assert generated_a == pytest.approx(sum(u["completion_tokens"] for u in small.usages), rel=0.3)
    dollars = sum(u["prompt_tokens"] * 3.0 + u["completion_tokens"] * 15.0 for u in large.usages) / 1e6
    assert float(table[("team-b", "large")][-1]) == pytest.approx(dollars, rel=0.3)
    assert float(table[("team-b", "*")][0]) == pytest.approx(1, rel=0.3)
    assert not any(tier == "small" for tenant, tier in table if tenant == "team-b"), "team-b never reached small"
    assert float(table[("team-a", "*")][0]) < 4.5, "the other cascade's pod (same figures) is not counted"
    # The operator's status summary reads the same queries: team-b first (it cost money), whole counts.
    assert summary is not None and summary["window"] == "1d" and summary["omittedTenants"] == 0
    assert [t["tenant"] for t in summary["tenants"]] == ["team-b", "team-a"]
    assert summary["tenants"][0]["costUsd"] == pytest.approx(dollars, rel=0.3)
    assert summary["tenants"][1]["requests"] == pytest.approx(3, abs=1)

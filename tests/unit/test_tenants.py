"""Tenants without a server: the tenants file format and its errors, bearer parsing, the trusted-header bound on
metric labels, the sliding-window arithmetic and the in-process counters (on a fake clock), OpenAI's
reset-duration format, usage counting, the gateway config's auth rules, and how an
InferenceCascade renders auth, quotas and prices (Secret volume, proxy secret env, the cache's Redis, a
ModelDeployment's cost per million tokens); the usage report's PromQL and table."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from neuroscale.api.inferencecascade import InferenceCascadeSpec
from neuroscale.gateway.auth import OTHER_TENANT, Authenticator, KeyFile, bearer_key, parse_tenants
from neuroscale.gateway.chargeback import usage_tokens
from neuroscale.gateway.config import AuthConfig
from neuroscale.gateway.protocol import OpenAIError
from neuroscale.gateway.auth import Tenant
from neuroscale.gateway.config import QuotaConfig
from neuroscale.gateway.quotas import MemoryCounters, Quotas, Window, duration
from neuroscale.render.inferencecascade import PROXY_SECRET_ENV, TENANTS_DIR, render_inference_cascade, resolve_tiers
from neuroscale.render.cachetier import cache_binding
from neuroscale.api.cachetier import CacheTierSpec
from neuroscale.api.inferencecascade import InferenceCascadeStatus
from neuroscale.controllers.cascade_usage import usage_summary
from neuroscale.usage.report import UsageRow, format_table, tenant_totals, usage_queries, usage_rows
from tests.support.factories import make_inference_cascade

A = hashlib.sha256(b"key-a").hexdigest()
B = hashlib.sha256(b"key-b").hexdigest()


def test_tenants_file_maps_digests_to_tenants_with_limits() -> None:
    keys = parse_tenants(f"tenants:\n  team-a:\n    keySha256: ['{A.upper()}', '{B}']\n    tokensPerMinute: 500\n")
    assert [(digest.hex(), tenant.name, tenant.tokens_per_minute) for digest, tenant in keys] == [
        (A, "team-a", 500), (B, "team-a", 500)]
    assert parse_tenants("") == [] and parse_tenants("{}") == []


@pytest.mark.parametrize(("text", "message"), [
    (f"tenants:\n  a: {{keySha256: ['{A}']}}\n  b: {{keySha256: ['{A}']}}\n", "listed for both 'a' and 'b'"),
    ("tenants:\n  a: {keySha256: [plain-key]}\n", "64 hex characters"),
    (f"tenants:\n  Team A: {{keySha256: ['{A}']}}\n", "tenant name 'Team A'"),
    ("tenants:\n  a: {keySha256: []}\n", "at least 1"),
    (f"tenants:\n  a: {{keySha256: ['{A}'], tokensPerMinute: 0}}\n", "greater than or equal to 1"),
    (f"tenants:\n  a: {{keys: ['{A}']}}\n", "keys: Extra inputs"),
    ("tenants: [", "not valid YAML"),
])
def test_bad_tenants_files_say_why_without_echoing_digests(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_tenants(text)
    assert A not in str(caught.value)


def test_bearer_key() -> None:
    assert bearer_key("Bearer sk-1") == bearer_key("bearer   sk-1 ") == "sk-1"
    assert bearer_key("Basic abc") is None and bearer_key("Bearer ") is None and bearer_key(None) is None


def test_trusted_header_tenants_past_the_bound_share_one_label() -> None:
    auth = Authenticator(AuthConfig(mode="trusted_header", tenant_header="x-tenant", proxy_cidrs=("10.0.0.0/8",),
                                    max_tenants=2), CollectorRegistry())
    labels = [auth.authenticate({"x-tenant": name}, "10.1.2.3").metric_label for name in ("a", "b", "c", "a", "d")]
    assert labels == ["a", "b", OTHER_TENANT, "a", OTHER_TENANT]
    assert auth.authenticate({"x-tenant": "c"}, "10.1.2.3").name == "c", "the tenant itself is kept for the cache"
    with pytest.raises(OpenAIError) as refused:
        auth.authenticate({"x-tenant": "a"}, "192.168.0.1")
    assert refused.value.status == 401 and refused.value.code == "untrusted_source"


@pytest.mark.parametrize(("change", "message"), [
    ({"mode": "api_keys"}, "needs keys_file"),
    ({"mode": "trusted_header", "tenant_header": "x-t"}, "any client could name any tenant"),
    ({"mode": "trusted_header"}, "needs tenant_header"),
    ({"mode": "trusted_header", "tenant_header": "x-t", "proxy_cidrs": ["10.0.0.300/8"]}, "not an address range"),
])
def test_auth_config_refuses_what_cannot_authenticate(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AuthConfig.model_validate(change)


def test_reset_durations_use_openais_format() -> None:
    assert [duration(s) for s in (0.02, 0.9994, 1.0, 1.2, 59.5, 60, 125)] == [
        "20ms", "999ms", "1s", "2s", "1m0s", "1m0s", "2m5s"]


def test_sliding_window_weighs_the_previous_minute_by_what_is_left_of_it() -> None:
    window = Window(limit=100, previous=80, current=30, into=15)
    assert window.used == 80 * 0.75 + 30 and window.remaining == 10 and window.retry_after == 0
    full = Window(limit=100, previous=80, current=50, into=15)  # used 110: 10 over, the previous share sheds 80/min
    assert full.remaining == 0 and full.retry_after == pytest.approx(10 / 80 * 60, abs=0.01)
    over = Window(limit=100, previous=0, current=150, into=45)  # wait for next minute, then a third of it
    assert over.retry_after == pytest.approx(15 + 20, abs=0.01)
    assert (over.reset, Window(100, 5, 0, 45).reset, Window(100, 0, 0, 45).reset) == (75, 15, 0)


async def test_memory_counters_admit_charge_and_slide() -> None:
    now = [600.0]
    quotas = Quotas(QuotaConfig(tokens_per_minute=100, requests_per_minute=3), CollectorRegistry(),
                    counters=MemoryCounters(lambda: now[0]))
    tenant = Tenant("team-a")
    headers = await quotas.admit(tenant)
    assert headers["x-ratelimit-remaining-requests"] == "2" and headers["x-ratelimit-remaining-tokens"] == "100"
    quotas.charge_soon(tenant, 120)
    quotas.charge_soon(tenant, 130)  # answers ending together are charged in one call
    assert quotas._pending["team-a"][2] == 250
    await quotas.flush()
    with pytest.raises(OpenAIError) as refused:
        await quotas.admit(tenant)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "61"
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0", "charged up to the limit, not beyond"
    now[0] += 90  # half of the previous minute's 100 tokens still count
    assert (await quotas.admit(tenant))["x-ratelimit-remaining-tokens"] == "50"
    assert quotas.rejections.labels("team-a", "tokens")._value.get() == 1


def test_usage_tokens_ignores_what_is_not_a_count() -> None:
    assert usage_tokens({"prompt_tokens": 7, "completion_tokens": 3}) == {"prompt": 7, "completion": 3}
    assert usage_tokens({"prompt_tokens": -1, "completion_tokens": True}) == {"prompt": 0, "completion": 0}
    assert usage_tokens(None) == {"prompt": 0, "completion": 0}


def rendered_objects(spec: dict) -> list[dict]:
    parsed = InferenceCascadeSpec.model_validate(make_inference_cascade(**spec)["spec"])
    return render_inference_cascade("chat", "models", parsed, resolve_tiers(parsed, "models", {}), None,
                                    image="neuroscale:test").objects


def render(spec: dict, cost: float | None = None, cache: bool = False):
    parsed = InferenceCascadeSpec.model_validate(make_inference_cascade(**spec)["spec"])
    llama = {"spec": {"model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"}},
             "status": {"costPerMillionTokens": cost} if cost is not None else {}}
    binding = cache_binding("answers", "models", CacheTierSpec.model_validate(
        {"mode": "exact", "backend": {"inCluster": {}}}), key_prefix="chat") if cache else None
    rendered = render_inference_cascade("chat", "models", parsed, resolve_tiers(parsed, "models", {"llama": llama}),
                                        binding, image="neuroscale:test")
    deployment = next(o for o in rendered.objects if o["kind"] == "Deployment")
    return rendered.config, deployment["spec"]["template"]["spec"]


def test_api_keys_by_default_mount_the_secret_and_read_no_api() -> None:
    config, pod = render({}, cost=0.42, cache=True)
    assert config.auth.mode == "api_keys" and config.auth.keys_file == f"{TENANTS_DIR}/tenants.yaml"
    volume = next(v for v in pod["volumes"] if v["name"] == "tenants")["secret"]
    assert volume == {"secretName": "chat-api-keys", "optional": True,
                      "items": [{"key": "tenants.yaml", "path": "tenants.yaml"}]}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "tenants")
    assert mount == {"name": "tenants", "mountPath": TENANTS_DIR, "readOnly": True} and "subPath" not in mount
    # The gateway reads the mounted file; what its token may read (replica routing) includes no Secret.
    roles = [o for o in rendered_objects({}) if o["kind"] == "Role"]
    assert all("secrets" not in rule.get("resources", ()) for role in roles for rule in role["rules"])
    assert config.quotas is not None and config.quotas.redis_url == config.cache["redis_url"]
    small, large = config.tiers
    assert (small.price.prompt_per_million, small.price.completion_per_million) == (0.0, 0.42)
    assert large.price.completion_per_million == 0.0


def test_trusted_header_and_price_table_render() -> None:
    auth = {"mode": "trustedHeader", "trustedHeader": {
        "header": "x-tenant", "proxyCidrs": ["10.0.0.0/16"], "sharedSecretHeader": "x-proxy-secret",
        "sharedSecretRef": {"name": "proxy", "key": "secret"}}}
    tiers = [{"name": "small", "modelDeployment": {"name": "llama"},
              "pricing": {"promptPerMillionTokens": 0.1, "completionPerMillionTokens": 0.2}},
             {"name": "large", "bedrock": {"modelId": "anthropic.claude", "region": "us-east-1"},
              "pricing": {"promptPerMillionTokens": 3, "completionPerMillionTokens": 15}}]
    config, pod = render({"auth": auth, "tiers": tiers, "quotas": {"tokensPerMinute": 1000}}, cost=0.42)
    assert config.auth.mode == "trusted_header" and config.auth.proxy_cidrs == ("10.0.0.0/16",)
    assert config.auth.shared_secret_env == PROXY_SECRET_ENV
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env[PROXY_SECRET_ENV]["valueFrom"] == {"secretKeyRef": {"name": "proxy", "key": "secret"}}
    assert all(v["name"] != "tenants" for v in pod["volumes"])
    assert [(t.price.prompt_per_million, t.price.completion_per_million) for t in config.tiers] == [(0.1, 0.2), (3, 15)]
    assert config.quotas is not None and config.quotas.redis_url is None and config.quotas.tokens_per_minute == 1000


def test_no_auth_without_quotas_renders_neither() -> None:
    config, pod = render({"auth": {"mode": "none"}})
    assert config.auth.mode == "none" and config.quotas is None


def test_usage_queries_select_one_cascades_gateways_and_refuse_odd_windows() -> None:
    queries = usage_queries("models", 'c"x.y', "1d")
    assert queries["requests"] == ('sum by (tenant, tier) (increase(neuroscale_gateway_tenant_requests_total'
                                   '{namespace="models",pod=~"c\\"x\\\\.y-gateway-[a-z0-9]+-[a-z0-9]+"}[1d]))')
    assert 'kind="completion"' in queries["completion_tokens"] and "by (tenant, from_tier)" in queries["escalations"]
    assert usage_queries(None, None, "30m")["cost_usd"].endswith("neuroscale_gateway_tenant_cost_usd_total{}[30m]))")
    for window in ("1y", "1d]) or vector(1", "0h", ""):
        with pytest.raises(ValueError, match="is not a duration"):
            usage_queries(None, None, window)


def test_usage_rows_merge_columns_put_cache_last_and_drop_zero_rows() -> None:
    rows = usage_rows({
        "requests": [({"tenant": "b", "tier": "small"}, 2.0), ({"tenant": "a", "tier": "cache"}, 1.0),
                     ({"tenant": "a", "tier": "small"}, 3.0), ({"tenant": "a", "tier": "large"}, 0.0)],
        "cost_usd": [({"tenant": "a", "tier": "small"}, 0.5)],
        "cache_hits": [({"tenant": "a"}, 1.0)],
        "escalations": [({"tenant": "b", "from_tier": "small"}, 1.0)],
    })
    assert [(r.tenant, r.tier, r.requests, r.cache_hits, r.escalations, r.cost_usd) for r in rows] == [
        ("a", "small", 3.0, 0, 0, 0.5), ("a", "cache", 1.0, 1.0, 0, 0), ("b", "small", 2.0, 0, 1.0, 0)]
    totals = tenant_totals(rows)
    assert [(t.tenant, t.requests, t.cost_usd) for t in totals] == [("a", 4.0, 0.5), ("b", 2.0, 0)]
    table = format_table(rows, "1d").splitlines()
    assert table[1].split()[:3] == ["tenant", "tier", "requests"] and table[-1].split()[:3] == ["b", "*", "2"]


def test_status_summary_lists_the_costliest_tenants_in_whole_counts() -> None:
    rows = [UsageRow(f"t{i:02d}", "small", requests=i + 0.4, cost_usd=i / 3) for i in range(60)]
    summary = usage_summary(rows)
    assert summary["omittedTenants"] == 10 and len(summary["tenants"]) == 50
    assert summary["tenants"][0] == {"tenant": "t59", "requests": 59, "promptTokens": 0, "completionTokens": 0,
                                     "cacheHits": 0, "savedTokens": 0, "escalations": 0, "costUsd": 19.6667}
    InferenceCascadeStatus.model_validate({"usage": summary})


def test_gateway_pods_drain_and_two_or_more_get_a_disruption_budget() -> None:
    parsed = InferenceCascadeSpec.model_validate(make_inference_cascade(gateway={"replicas": 3, "drainSeconds": 40})["spec"])
    rendered = render_inference_cascade("chat", "models", parsed, resolve_tiers(parsed, "models", {}), None,
                                        image="neuroscale:test")
    pod = next(o for o in rendered.objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert rendered.config.drain_seconds == 40
    assert pod["containers"][0]["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert pod["terminationGracePeriodSeconds"] == 50 and pod["topologySpreadConstraints"]
    budget = next(o for o in rendered.objects if o["kind"] == "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1 and budget["selector"]["matchLabels"].items() <= \
        next(o for o in rendered.objects if o["kind"] == "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    single = InferenceCascadeSpec.model_validate(make_inference_cascade(gateway={"replicas": 1})["spec"])
    objects = render_inference_cascade("chat", "models", single, resolve_tiers(single, "models", {}), None,
                                       image="neuroscale:test").objects
    assert all(o["kind"] != "PodDisruptionBudget" for o in objects), "one replica must never block a node drain"


def test_tenants_file_appearing_later_is_picked_up_and_a_missing_one_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tenants.yaml"
    keys = KeyFile(str(path))
    assert not keys.refresh() and not keys.refresh()
    assert sum("unreadable" in r.message for r in caplog.records) == 1
    path.write_text(f"tenants:\n  a: {{keySha256: ['{A}']}}\n")
    assert keys.refresh() and keys.names == {"a"}
    assert not keys.refresh(), "an unchanged file is not parsed again"

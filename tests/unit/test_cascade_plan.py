"""`neuroscale plan` on the cascade examples: every object the operator would create, rendered offline.

Covers: both examples render without errors; ModelDeployment tiers in the same file resolve to their Services and
served model names; the gateway ConfigMap holds a config the gateway itself accepts (parse_config), with the cache
from the CacheTier in the file and no secret value; the external Redis password and no other secret reaches the pod
only as a secretKeyRef; a tier whose ModelDeployment is not in the input resolves to the conventional Service URL.
"""

from __future__ import annotations

import json
from pathlib import Path

from neuroscale import yamlio
from neuroscale.gateway.config import parse_config
from neuroscale.render.plan import plan_documents

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def plan(name):
    result = plan_documents(list(yamlio.load_all((EXAMPLES / name).read_text())))
    assert result.ok, result.errors
    return result


def find(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_8b_to_70b_exact_cache_renders_gateway_and_redis():
    objects = plan("cascade-8b-to-70b-exact-cache.yaml").objects
    config = parse_config(find(objects, "ConfigMap", "chat-gateway")["data"]["gateway.json"])
    assert [(t.name, t.url, t.model) for t in config.tiers] == [
        ("small", "http://llama-8b.models.svc.cluster.local:8000/v1", "llama-3.1-8b-instruct"),
        ("large", "http://llama-70b.models.svc.cluster.local:8000/v1", "llama-3.3-70b-instruct"),
    ]
    assert config.cache["mode"] == "exact" and config.cache["redis_url"].startswith("redis://chat-cache-redis.")
    assert config.auth.mode == "api_keys" and config.escalation.min_mean_logprob == -1.2
    assert config.quotas is not None and config.quotas.redis_url == config.cache["redis_url"]
    gateway_pod = find(objects, "Deployment", "chat-gateway")["spec"]["template"]["metadata"]["labels"]
    policy = find(objects, "NetworkPolicy", "chat-cache-redis")["spec"]
    admitted = policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert admitted.items() <= gateway_pod.items(), "the gateway must be admitted to its Redis"
    redis = find(objects, "Deployment", "chat-cache-redis")["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][redis["args"].index("--maxmemory") + 1] == "512mb"


def test_bedrock_semantic_cache_keeps_secrets_out_of_the_config():
    objects = plan("cascade-bedrock-semantic-cache.yaml").objects
    text = find(objects, "ConfigMap", "assistant-gateway")["data"]["gateway.json"]
    config = parse_config(text)
    assert [t.kind for t in config.tiers] == ["openai", "bedrock"]
    assert config.cache["mode"] == "semantic" and config.cache["redis_url"].startswith("rediss://")
    assert "chat-redis" not in text and "password" not in json.loads(text)["cache"]
    pod = find(objects, "Deployment", "assistant-gateway")["spec"]["template"]["spec"]
    secret_env = [e for e in pod["containers"][0]["env"] if "valueFrom" in e]
    assert [e["valueFrom"]["secretKeyRef"]["name"] for e in secret_env] == ["chat-redis"]
    assert pod["serviceAccountName"] == "assistant-gateway"
    account = find(objects, "ServiceAccount", "assistant-gateway")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith("neuroscale-cascade-bedrock")


def test_model_deployment_outside_the_input_uses_the_conventional_url():
    docs = [d for d in yamlio.load_all((EXAMPLES / "cascade-8b-to-70b-exact-cache.yaml").read_text())
            if d["kind"] == "InferenceCascade"]
    result = plan_documents(docs)
    assert result.ok, result.errors
    config = parse_config(find(result.objects, "ConfigMap", "chat-gateway")["data"]["gateway.json"])
    assert config.tiers[1].url == "http://llama-70b.models.svc.cluster.local:8000/v1"
    assert config.cache is None  # the CacheTier is not in the input

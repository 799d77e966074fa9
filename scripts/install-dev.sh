#!/usr/bin/env bash
# Create .venv with everything the operator, the gateway and the tests need, plus the real Redis and Prometheus
# servers the integration tests start on loopback (Debian packages) and the real Kubernetes control plane the e2e
# tier starts (built from source with Go: minutes the first time, then cached).
# pip is upgraded first (the stock 23.2 mis-resolves boto3 against kubernetes); torch comes first as the
# CPU build, so sentence-transformers does not pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null || ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends redis-server prometheus >/dev/null
    # The packages may start system services; the tests start their own instances on free ports.
    (service redis-server stop; service prometheus stop) >/dev/null 2>&1 || true
  else
    echo "install-dev: redis-server and prometheus are missing; install them (Debian: apt-get install" \
         "redis-server prometheus) or the integration tests that need them will fail" >&2
  fi
fi

python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q "torch==2.13.0"
.venv/bin/pip install -q -e ".[semantic,simulate,test]"
# helm-sdkpy bundles the real Helm library; it declares Python >= 3.12 but lint/template work on 3.11.
.venv/bin/pip install -q --ignore-requires-python "helm-sdkpy>=0.1.30"

.venv/bin/python - <<'PY'
from importlib.metadata import version
import boto3
print("resolved:", ", ".join(f"{n} {version(n)}" for n in (
    "kopf", "kubernetes", "boto3", "botocore", "pydantic", "prometheus-api-client", "aiohttp", "redis", "kmock",
    "torch", "sentence-transformers", "moto", "openai")))
assert tuple(int(p) for p in boto3.__version__.split(".")[:2]) >= (1, 40), f"boto3 {boto3.__version__} is too old"
PY
redis-server --version
prometheus --version 2>&1 | head -1
# The real Kubernetes control plane of the e2e tier, built from its Go modules once and cached by version.
scripts/build-control-plane.sh

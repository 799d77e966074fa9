#!/usr/bin/env bash
# Create .venv with the operator, the gateway and the simulator (no torch: the in-process semantic embedder is the
# optional `semantic` extra). pip is upgraded first: the stock 23.2 mis-resolves boto3 against the Kubernetes client.
set -euo pipefail
cd "$(dirname "$0")/.."
python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[simulate]"

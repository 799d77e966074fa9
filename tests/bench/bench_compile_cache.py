"""What the compile cache adds to one ModelDeployment reconcile, side by side: the artifact key next to the whole
render it is part of, and the S3 marker check (a ListObjectsV2 to moto in server mode on loopback, so a lower bound
for S3 itself) next to an answer reused within the TTL. Prints medians over --runs calls and the ratios.

    .venv/bin/python tests/bench/bench_compile_cache.py [--runs 2000]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable

import boto3
from moto.server import ThreadedMotoServer

from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.aws.artifacts import S3ArtifactStore
from neuroscale.render import render_model_deployment
from neuroscale.render.artifacts import ArtifactInputs, artifact_key

SPEC = ModelDeploymentSpec.model_validate({
    "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"}, "accelerator": {"families": ["inf2"]},
    "compileCache": {"uri": "s3://bench/compiled"}})


def median_us(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    runs = parser.parse_args().runs

    inputs = ArtifactInputs(model="hf://meta-llama/Llama-3.1-8B-Instruct", revision=None, engine="vllm",
                            image="img", target="inferentia2", tensor_parallel=2, max_num_seqs=8, max_model_len=4096,
                            dtype="bf16", kv_cache_dtype="auto", args=("serve",) * 30, env=(("A", "1"),) * 6)
    render_us = median_us(lambda: render_model_deployment("llama", "models", SPEC, 1), runs // 4)
    key_us = median_us(lambda: artifact_key(inputs), runs)
    print(f"render one ModelDeployment (key included)   {render_us:9.1f} µs")
    print(f"artifact key alone                          {key_us:9.1f} µs  ({100 * key_us / render_us:.1f} % of render)")

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log, one line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    try:
        boto3.client("s3").create_bucket(Bucket="bench")
        fresh = S3ArtifactStore(0)
        fresh.marker("bench", "compiled/k/complete")  # the client and its connection, once
        check_us = median_us(lambda: fresh.marker("bench", "compiled/k/complete"), runs // 10)
        reused = S3ArtifactStore(3600)
        reused.marker("bench", "compiled/k/complete")
        reused_us = median_us(lambda: reused.marker("bench", "compiled/k/complete"), runs)
    finally:
        server.stop()
    print(f"marker check, ListObjectsV2 to moto         {check_us:9.1f} µs")
    print(f"marker check, answer reused within the TTL  {reused_us:9.1f} µs  (1/{check_us / reused_us:.0f} of a check)")


if __name__ == "__main__":
    main()

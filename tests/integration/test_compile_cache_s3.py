"""The compile cache against S3 (moto in server mode): the operator's marker check and the pods' scripts.

Covers: the marker check through a real boto3 client: Miss, then Hit once `complete` exists (a half-uploaded set
without it stays a Miss), answers reused for the TTL, a missing bucket, no credentials and an unreachable endpoint
as condition reasons (never an exception), AccessDenied through botocore's Stubber (moto does not enforce IAM);
the upload and restore scripts run by bash with the real AWS CLI (skipped where no `aws` is installed): the sidecar
waits for the engine's health check, uploads the cache and the weights under `sets/<pod>/` and writes the marker
last, then leaves at once and cleanly on SIGTERM; a restore brings back exactly that set and flags the weights; a restore without a marker does nothing; a
prefix carrying shell syntax is passed through as data, never run.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from neuroscale import reasons as R
from neuroscale.aws.artifacts import S3ArtifactStore
from neuroscale.render.compile_cache import RESTORE_SCRIPT, RESTORED_WEIGHTS_FLAG, UPLOAD_SCRIPT

BUCKET = "artifacts"
PREFIX = f"s3://{BUCKET}/neuron/k1/"
MARKER = "neuron/k1/complete"


@pytest.fixture
def s3(moto_s3: str) -> object:
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def test_a_key_is_a_hit_only_once_its_marker_exists(s3: object) -> None:
    clock = [0.0]
    store = S3ArtifactStore(30, clock=lambda: clock[0])
    assert store.marker(BUCKET, MARKER).found is False
    s3.put_object(Bucket=BUCKET, Key="neuron/k1/sets/pod-a/neuron/model.pt", Body=b"half an upload")
    s3.put_object(Bucket=BUCKET, Key="neuron/k1/completed-elsewhere", Body=b"")
    clock[0] = 31
    assert store.marker(BUCKET, MARKER).found is False
    s3.put_object(Bucket=BUCKET, Key=MARKER, Body=b"sets/pod-a\n{}\n")
    assert store.marker(BUCKET, MARKER).found is False  # the miss is remembered for the TTL
    clock[0] = 62
    assert store.marker(BUCKET, MARKER).found is True
    s3.delete_object(Bucket=BUCKET, Key=MARKER)
    clock[0] = 62 + 30 * 5
    assert store.marker(BUCKET, MARKER).found is True  # a hit is trusted ten times longer


def test_a_missing_bucket_is_a_reason(moto_s3: str) -> None:
    check = S3ArtifactStore(0).marker("no-such-bucket", MARKER)
    assert (check.found, check.reason) == (None, R.S3_BUCKET_MISSING)


def test_no_credentials_is_a_reason(moto_s3: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    check = S3ArtifactStore(0).marker(BUCKET, MARKER)
    assert (check.found, check.reason) == (None, R.S3_NO_CREDENTIALS)
    assert "IAM role" in check.message


def test_an_unreachable_endpoint_is_a_reason(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    check = S3ArtifactStore(0).marker(BUCKET, MARKER)
    assert (check.found, check.reason) == (None, R.S3_UNAVAILABLE)


def test_access_denied_is_a_reason(moto_s3: str) -> None:
    client = boto3.client("s3")
    with Stubber(client) as stub:
        stub.add_client_error("list_objects_v2", service_error_code="AccessDenied", service_message="Access Denied",
                              http_status_code=403,
                              expected_params={"Bucket": BUCKET, "Prefix": MARKER, "MaxKeys": 1})
        check = S3ArtifactStore(0, client=client).marker(BUCKET, MARKER)
    assert (check.found, check.reason) == (None, R.S3_ACCESS_DENIED)
    assert "s3:ListBucket" in check.message


needs_cli = pytest.mark.skipif(shutil.which("aws") is None or shutil.which("bash") is None,
                               reason="the scripts run the AWS CLI and bash (the pods' aws-cli image has both)")


@pytest.fixture
def engine_health() -> Iterator[int]:
    """A loopback server answering GET /health with 200, standing in for the engine's health endpoint."""
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def restore(prefix: str, cache: Path, weights: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", RESTORE_SCRIPT, "restore-compile-cache", prefix, str(cache), str(weights)],
                          capture_output=True, text=True, timeout=120, check=True)


@needs_cli
def test_the_sidecar_uploads_after_ready_and_a_restore_brings_that_set_back(
    s3: object, engine_health: int, tmp_path: Path,
) -> None:
    cache, weights = tmp_path / "cache", tmp_path / "weights"
    (cache / "quantized").mkdir(parents=True)
    (cache / "model.pt").write_bytes(b"compiled graph")
    (cache / "quantized" / "model.safetensors").write_bytes(b"int8 weights")
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    upload = subprocess.Popen(
        ["bash", "-c", UPLOAD_SCRIPT, "upload-compile-cache", PREFIX, str(cache), str(weights), str(engine_health),
         "/health"], env={**os.environ, "POD_NAME": "llama-7d9f-abcde", "MANIFEST": '{"schema":1}'},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not s3.list_objects_v2(Bucket=BUCKET, Prefix=MARKER).get("KeyCount"):
            assert upload.poll() is None and time.monotonic() < deadline, "the sidecar wrote no marker"
            time.sleep(0.5)
        upload.send_signal(signal.SIGTERM)  # the pod stops: the sidecar leaves at once, and cleanly
        assert upload.wait(timeout=5) == 0
    finally:
        if upload.poll() is None:
            os.killpg(upload.pid, signal.SIGKILL)
            upload.wait(timeout=10)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {MARKER, "neuron/k1/sets/llama-7d9f-abcde/neuron/model.pt",
                    "neuron/k1/sets/llama-7d9f-abcde/neuron/quantized/model.safetensors",
                    "neuron/k1/sets/llama-7d9f-abcde/weights/config.json"}
    marker = s3.get_object(Bucket=BUCKET, Key=MARKER)["Body"].read().decode().splitlines()
    assert marker == ["sets/llama-7d9f-abcde", '{"schema":1}']

    new_cache, new_weights = tmp_path / "new-cache", tmp_path / "new-weights"
    new_cache.mkdir()
    new_weights.mkdir()
    done = restore(PREFIX, new_cache, new_weights)
    assert "restored" in done.stdout
    assert (new_cache / "quantized" / "model.safetensors").read_bytes() == b"int8 weights"
    assert (new_cache / "model.pt").read_bytes() == b"compiled graph"
    assert (new_weights / "config.json").read_text() == "{}" and (new_weights / RESTORED_WEIGHTS_FLAG).exists()


@needs_cli
def test_without_a_marker_a_restore_does_nothing(s3: object, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key="neuron/k1/sets/pod-a/neuron/model.pt", Body=b"half an upload")
    cache, weights = tmp_path / "cache", tmp_path / "weights"
    cache.mkdir()
    weights.mkdir()
    done = restore(PREFIX, cache, weights)
    assert "this replica compiles" in done.stdout
    assert not any(cache.iterdir()) and not any(weights.iterdir())


@needs_cli
def test_shell_syntax_in_the_prefix_is_data(s3: object, tmp_path: Path) -> None:
    witness = tmp_path / "ran"
    cache, weights = tmp_path / "cache", tmp_path / "weights"
    cache.mkdir()
    weights.mkdir()
    restore(f"s3://{BUCKET}/x$(touch${{IFS}}{witness})`touch {witness}`;touch {witness}/", cache, weights)
    assert not witness.exists()

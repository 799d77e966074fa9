"""The compiled-artifact lifecycle on the real control plane, with S3 served by moto and the operator in-process.

Covers: a ModelDeployment with a compile cache reports its artifact key and a Miss (Compiling while its pod
starts); once kwok makes the pod Ready the measured cold start appears in status.coldStart (creation → Ready, one
sample) and the state turns Uploading; the completion marker put into S3 turns it Ready; a second ModelDeployment
with the same shapes under another name shares the key and is a Hit at once; a compile cache in a bucket that does
not exist is CompileCache=False (S3BucketMissing) with a Warning Event, and the replicas are still rendered. The
operator reaches moto only through its ordinary AWS configuration (AWS_ENDPOINT_URL and credentials in the
environment), as on EKS it reaches S3 through IRSA.
"""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import pytest

from tests.e2e.cluster import eventually, running_operator
from tests.e2e.test_modeldeployment_e2e import Cluster, condition

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BUCKET = "neuron-artifacts"
URI = f"s3://{BUCKET}/compiled"


@pytest.fixture
def cluster(api: Any, namespace: str) -> Cluster:
    return Cluster(api, namespace)


def operator_config() -> Any:
    from neuroscale.runtime import OperatorConfig

    # Short resync and S3 answer reuse: the marker appears without any Kubernetes event to wake the reconcile.
    return OperatorConfig(resync_seconds=2.0, autoscale_interval_seconds=5.0, compile_cache_check_seconds=0.5)


def cache_state(cluster: Cluster, name: str = "llama") -> dict[str, Any]:
    return (cluster.md(name).get("status") or {}).get("compileCache") or {}


async def test_a_miss_is_measured_uploaded_and_shared(control_plane: Any, cluster: Cluster, moto_s3: str) -> None:
    if control_plane is None:
        pytest.skip("needs the suite's kwok nodes to make pods Ready, and moto for S3")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    async with running_operator(cluster.namespace, config=operator_config()):
        await asyncio.to_thread(cluster.create, compileCache={"uri": URI})
        # kwok makes a pod Ready within a second or two: the miss may already be Uploading at the first look.
        first = await eventually(lambda: cache_state(cluster).get("state") in ("Miss", "Compiling", "Uploading") and
                                 cache_state(cluster))
        key = first["key"]
        assert first["uri"] == f"{URI}/{key}/"
        template = (await asyncio.to_thread(cluster.deployment)).spec.template
        assert template.metadata.annotations["neuroscale.io/artifact-key"] == key

        md = await eventually(lambda: (m := cluster.md()) and (m["status"].get("coldStart") or {}).get("samples")
                              and m, timeout=120)
        cold = md["status"]["coldStart"]
        assert cold["key"] == key and cold["samples"] == 1 and 0 <= cold["seconds"] < 120
        assert cold["recent"][0]["pod"].startswith("llama-")
        uploading = await eventually(lambda: cache_state(cluster).get("state") == "Uploading" and
                                     cache_state(cluster))
        assert uploading["readySeconds"] == cold["seconds"]

        s3.put_object(Bucket=BUCKET, Key=f"compiled/{key}/complete", Body=b"sets/llama-0\n{}\n")
        ready = await eventually(lambda: cache_state(cluster).get("state") == "Ready" and cache_state(cluster))
        assert ready["key"] == key
        assert condition(cluster.md(), "CompileCache")["reason"] == "ArtifactsFound"

        await asyncio.to_thread(cluster.create, "llama-two", compileCache={"uri": URI}, replicas=2)
        shared = await eventually(lambda: cache_state(cluster, "llama-two").get("state") and
                                  cache_state(cluster, "llama-two"))
    assert (shared["key"], shared["state"]) == (key, "Hit")


async def test_a_missing_bucket_is_a_condition_and_an_event(cluster: Cluster, moto_s3: str) -> None:
    async with running_operator(cluster.namespace, config=operator_config()):
        await asyncio.to_thread(cluster.create, compileCache={"uri": "s3://no-such-bucket/compiled"})
        md = await eventually(lambda: (m := cluster.md()) and condition(m, "CompileCache") and m)
        await eventually(lambda: any(e.reason == "S3BucketMissing" and e.type == "Warning"
                                     for e in cluster.events()))
    problem = condition(md, "CompileCache")
    assert (problem["status"], problem["reason"]) == ("False", "S3BucketMissing")
    assert md["status"]["compileCache"]["state"] == "Unknown"
    assert condition(md, "Sized")["status"] == "True"
    assert (await asyncio.to_thread(cluster.children))["Deployment"] is not None

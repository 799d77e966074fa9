"""Rendering a ModelDeployment into Kubernetes objects.

Covers: the objects and their order; labels, the immutable selector and the endpoint; child-name validation;
ServiceAccount cases (none, existing, IRSA); Neuron device requests, toleration, instance-type node selection and
the scheduler name; host CPU/memory derived from the instance or overridden (canonical quantities); /dev/shm;
startup probe budget from model size and compile cache; S3 weights and compile-cache init containers (argument
lists, no shell); for every source kind and engine, the weights an init container writes are the path the engine is
told to load (followed through the volume mounts); vLLM's hf:// download (token, revision) and the quantized
checkpoint inside the restored compile cache; the vLLM image and flags per instance family (trn2: the vLLM Neuron
plugin); scratch disk for quantizing at load; hub token as a secret reference; non-root security context; Service,
PDB; validation of every object against the Kubernetes 1.31 OpenAPI schema for each engine.
"""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest

from neuroscale.api.modeldeployment import MODEL_SOURCE, ModelDeploymentSpec
from neuroscale.render import EngineImages, render_model_deployment
from neuroscale.render.modeldeployment import RenderedModel, served_model_name
from neuroscale.render.quantities import canonical_quantity, parse_quantity
from neuroscale.render.resources import MAX_STARTUP_SECONDS
from neuroscale.sizing.sizer import SizingError
from tests.support.factories import make_model_deployment

KUBERNETES_VERSION = "1.31"


def make_spec(**overrides: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(make_model_deployment(**overrides)["spec"])


def render(spec: ModelDeploymentSpec | None = None, name: str = "llama", namespace: str = "models",
           replicas: int = 2, **kwargs: Any) -> RenderedModel:
    return render_model_deployment(name, namespace, spec or make_spec(), replicas, **kwargs)


def by_kind(rendered: RenderedModel, kind: str) -> dict:
    (found,) = [obj for obj in rendered.objects if obj["kind"] == kind]
    return found


def pod_spec(rendered: RenderedModel) -> dict:
    return by_kind(rendered, "Deployment")["spec"]["template"]["spec"]


def engine(rendered: RenderedModel) -> dict:
    (container,) = [c for c in pod_spec(rendered)["containers"] if c["name"] == "engine"]
    return container


def env_of(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def test_default_objects_are_deployment_service_pdb_in_namespace_without_owner():
    rendered = render()
    assert [obj["kind"] for obj in rendered.objects] == ["Deployment", "Service", "PodDisruptionBudget"]
    for obj in rendered.objects:
        assert obj["metadata"]["name"] == "llama"
        assert obj["metadata"]["namespace"] == "models"
        assert "ownerReferences" not in obj["metadata"]


@pytest.mark.parametrize("engine_name", ["vllm", "tgi", "djl-lmi"])
def test_every_object_passes_the_kubernetes_schema(engine_name: str):
    spec = make_spec(
        model={"source": "s3://weights-bucket/llama-3.1-8b/"},
        engine={"name": engine_name, "hubTokenSecretRef": {"name": "hf-token"}, "env": [{"name": "A", "value": "b"}]},
        compileCache={"uri": "s3://cache-bucket/neuron/llama"},
        serviceAccount={"roleArn": "arn:aws:iam::123456789012:role/model-reader"},
        accelerator={"schedulerName": "neuron-scheduler"},
        scheduling={"tolerations": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
                    "priorityClassName": "inference"},
        resources={"cpu": "1500m", "memory": "1024Mi"},
    )
    rendered = render(spec)
    assert [obj["kind"] for obj in rendered.objects] == ["ServiceAccount", "Deployment", "Service",
                                                         "PodDisruptionBudget"]
    for obj in rendered.objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_a_typo_in_an_object_fails_the_schema_check():
    deployment = by_kind(render(), "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_labels_selector_and_endpoint():
    rendered = render(make_spec(engine={"name": "tgi"}))
    expected = {
        "app.kubernetes.io/name": "neuroscale",
        "app.kubernetes.io/instance": "llama",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "neuroscale",
        "neuroscale.io/model-deployment": "llama",
        "neuroscale.io/engine": "tgi",
    }
    for obj in rendered.objects:
        assert obj["metadata"]["labels"] == expected
    deployment = by_kind(rendered, "Deployment")
    assert deployment["spec"]["template"]["metadata"]["labels"] == expected
    # The engine may change over the CR's life; the immutable selector must not mention it.
    assert rendered.selector == {"app.kubernetes.io/instance": "llama", "neuroscale.io/model-deployment": "llama"}
    assert deployment["spec"]["selector"] == {"matchLabels": rendered.selector}
    assert by_kind(rendered, "Service")["spec"]["selector"] == rendered.selector
    assert by_kind(rendered, "PodDisruptionBudget")["spec"]["selector"] == {"matchLabels": rendered.selector}
    assert rendered.selector_string == "app.kubernetes.io/instance=llama,neuroscale.io/model-deployment=llama"
    assert rendered.endpoint == "http://llama.models.svc.cluster.local:8000/v1"


def test_selector_is_the_same_whatever_the_engine():
    selectors = {engine_name: render(make_spec(engine={"name": engine_name})).selector
                 for engine_name in ("vllm", "tgi", "djl-lmi")}
    assert len({tuple(sorted(s.items())) for s in selectors.values()}) == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a" * 64, "at most 63"),
        ("Llama", "lowercase"),
        ("llama.v1", "lowercase"),
        ("1llama", "starting with a letter"),
        ("llama-", "ending with a letter or digit"),
    ],
)
def test_names_that_cannot_name_a_service_raise_a_clear_error(name: str, message: str):
    with pytest.raises(ValueError, match=message):
        render(name=name)


def test_longest_valid_name_renders():
    rendered = render(name="m" * 63)
    assert rendered.endpoint.startswith("http://" + "m" * 63 + ".")


def test_bad_namespace_and_negative_replicas_raise():
    with pytest.raises(ValueError, match="namespace"):
        render(namespace="Bad_NS")
    with pytest.raises(ValueError, match="replicas"):
        render(replicas=-1)


def test_replicas_come_from_the_caller_including_zero():
    assert by_kind(render(replicas=0), "Deployment")["spec"]["replicas"] == 0
    assert by_kind(render(replicas=7), "Deployment")["spec"]["replicas"] == 7


def test_model_that_does_not_fit_raises_sizing_error():
    spec = make_spec(model={"source": "hf://meta-llama/Llama-3.1-70B-Instruct"},
                     accelerator={"instanceType": "inf2.xlarge"})
    with pytest.raises(SizingError, match="inf2.xlarge"):
        render(spec)


def test_service_account_created_only_with_a_role():
    assert pod_spec(render()).get("serviceAccountName") is None
    assert pod_spec(render())["automountServiceAccountToken"] is False

    existing = render(make_spec(serviceAccount={"name": "model-reader"}))
    assert "ServiceAccount" not in [obj["kind"] for obj in existing.objects]
    assert pod_spec(existing)["serviceAccountName"] == "model-reader"

    irsa = render(make_spec(serviceAccount={"roleArn": "arn:aws:iam::123456789012:role/r"}))
    account = by_kind(irsa, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/r"}
    assert pod_spec(irsa)["serviceAccountName"] == "llama"


def test_neuron_devices_toleration_node_selection_and_scheduler():
    spec = make_spec(
        model={"source": "hf://meta-llama/Llama-3.3-70B-Instruct"},
        accelerator={"instanceType": "inf2.48xlarge", "tensorParallelDegree": 24, "schedulerName": "my-scheduler"},
        scheduling={"nodeSelector": {"team": "ml", "node.kubernetes.io/instance-type": "ignored"}},
    )
    rendered = render(spec)
    pod = pod_spec(rendered)
    resources = engine(rendered)["resources"]
    assert resources["requests"]["aws.amazon.com/neuron"] == "12"
    assert resources["limits"]["aws.amazon.com/neuron"] == "12"
    assert "aws.amazon.com/neuroncore" not in resources["requests"]
    assert pod["schedulerName"] == "my-scheduler"
    assert pod["nodeSelector"] == {"team": "ml", "node.kubernetes.io/instance-type": "inf2.48xlarge"}
    assert {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "--tensor-parallel-size" in engine(rendered)["args"]
    assert engine(rendered)["args"][engine(rendered)["args"].index("--tensor-parallel-size") + 1] == "24"


def test_default_scheduler_is_left_to_kubernetes_and_user_tolerations_are_added_once():
    neuron = {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}
    spec = make_spec(scheduling={"tolerations": [neuron, {"key": "spot", "operator": "Exists"}]})
    pod = pod_spec(render(spec))
    assert "schedulerName" not in pod
    assert pod["tolerations"] == [neuron, {"key": "spot", "operator": "Exists"}]


def test_cpu_and_memory_derived_from_a_whole_instance_leave_room_for_daemons():
    spec = make_spec(accelerator={"instanceType": "inf2.8xlarge"})
    requests = engine(render(spec))["resources"]["requests"]
    assert requests["cpu"] == "27"  # floor(32 vCPU - 10% - 1)
    assert requests["memory"] == "113Gi"  # 128 GiB - 10% - 2 GiB


def test_cpu_and_memory_scale_with_the_share_of_devices_used():
    whole = make_spec(model={"source": "hf://meta-llama/Llama-3.3-70B-Instruct"},
                      accelerator={"instanceType": "inf2.48xlarge", "tensorParallelDegree": 24})
    half = make_spec(model={"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
                     accelerator={"instanceType": "inf2.48xlarge", "tensorParallelDegree": 2})
    whole_cpu = int(engine(render(whole))["resources"]["requests"]["cpu"])
    small_cpu = int(engine(render(half))["resources"]["requests"]["cpu"])
    assert whole_cpu == 171
    assert small_cpu == 14  # one of twelve devices
    # Loading 8B weights needs more host memory than 1/12 of the node would give; the request covers it.
    small_memory = engine(render(half))["resources"]["requests"]["memory"]
    assert canonical_quantity(small_memory) == small_memory
    assert int(small_memory.removesuffix("Gi")) >= 19


def test_resource_overrides_are_normalized_like_the_api_server():
    spec = make_spec(resources={"cpu": "1500m", "memory": "1024Mi"})
    resources = engine(render(spec))["resources"]
    assert resources["requests"]["cpu"] == "1500m"
    assert resources["requests"]["memory"] == "1Gi"
    assert resources["limits"]["memory"] == "1Gi"
    assert "cpu" not in resources["limits"]


def test_shm_is_a_memory_backed_volume_mounted_at_dev_shm():
    rendered = render(make_spec(accelerator={"instanceType": "inf2.8xlarge"}))
    volumes = {v["name"]: v for v in pod_spec(rendered)["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "10Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in engine(rendered)["volumeMounts"]


def _startup_seconds(rendered: RenderedModel) -> int:
    probe = engine(rendered)["startupProbe"]
    return probe["periodSeconds"] * probe["failureThreshold"]


def test_startup_budget_covers_published_load_and_compile_times():
    cold = render()
    cached = render(make_spec(compileCache={"uri": "s3://cache-bucket/llama"}))
    # Llama-3-8B loads in 10 min 40 s on inf2.8xlarge; compiling a ~15 GB model takes ~15 min.
    assert _startup_seconds(cold) >= 640 + 900
    # Any replica may miss the compile cache and compile (then upload): the budget is the same with one.
    assert _startup_seconds(cached) == _startup_seconds(cold)
    big = render(make_spec(model={"source": "hf://meta-llama/Llama-3.3-70B-Instruct"}))
    assert _startup_seconds(big) > _startup_seconds(cold)
    assert _startup_seconds(big) <= MAX_STARTUP_SECONDS
    deployment = by_kind(cold, "Deployment")
    assert deployment["spec"]["progressDeadlineSeconds"] > _startup_seconds(cold)


def test_startup_budget_honours_a_longer_declared_cold_start():
    spec = make_spec(compileCache={"uri": "s3://cache-bucket/llama"},
                     autoscaling={"coldStartSeconds": 3600})
    assert _startup_seconds(render(spec)) >= 5400


def test_probes_use_the_engine_health_path_on_the_named_port():
    for engine_name, path in (("vllm", "/health"), ("tgi", "/health"), ("djl-lmi", "/ping")):
        container = engine(render(make_spec(engine={"name": engine_name})))
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}
        # Readiness also turns off while the pod drains (render/drain.py), so it runs a check in the container.
        assert container["readinessProbe"]["exec"]["command"][-1] == f"http://127.0.0.1:8080{path}"
        assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_scrape_annotations_point_at_the_engine_metrics():
    for engine_name, path in (("vllm", "/metrics"), ("tgi", "/metrics"), ("djl-lmi", "/server/metrics")):
        annotations = by_kind(render(make_spec(engine={"name": engine_name})), "Deployment")["spec"]["template"][
            "metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "8080"
        assert annotations["prometheus.io/path"] == path


def test_s3_weights_and_compile_cache_are_restored_by_init_containers():
    spec = make_spec(model={"source": "s3://weights-bucket/meta/llama-3.1-8b"},
                     compileCache={"uri": "s3://cache-bucket/neuron/llama"})
    rendered = render(spec, images=EngineImages(aws_cli="registry.example/aws-cli:2"))
    inits = {c["name"]: c for c in pod_spec(rendered)["initContainers"]}
    assert inits["download-model"]["command"] == ["aws"]
    assert inits["download-model"]["args"][:4] == ["s3", "sync", "s3://weights-bucket/meta/llama-3.1-8b",
                                                   "/models/weights"]
    # Only the key's prefix is restored; weights from S3 do not travel with the artifacts (they are in S3 already).
    prefix = f"s3://cache-bucket/neuron/llama/{rendered.artifact_key}/"
    assert inits["restore-compile-cache"]["args"][1:] == [prefix, "/var/cache/neuron", ""]
    assert list(inits)[0] == "restore-compile-cache"
    assert {c["image"] for c in inits.values()} == {"registry.example/aws-cli:2"}
    container = engine(rendered)
    assert container["args"][1] == "/models/weights"
    assert env_of(container)["NEURON_COMPILED_ARTIFACTS"]["value"] == "/var/cache/neuron"
    annotations = by_kind(rendered, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["neuroscale.io/compile-cache"] == prefix
    assert annotations["neuroscale.io/artifact-key"] == rendered.artifact_key


def init_container(rendered: RenderedModel, name: str) -> dict | None:
    found = [c for c in pod_spec(rendered).get("initContainers", []) if c["name"] == name]
    return found[0] if found else None


def on_volume(container: dict, path: str) -> tuple[str, str]:
    """(volume, path within it) that `path` names in `container`, through its deepest matching volume mount."""
    mounts = [m for m in container["volumeMounts"]
              if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert mounts, f"{path} is on no volume of container {container['name']}"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    return mount["name"], path[len(mount["mountPath"]):].strip("/")


def download_target(init: dict) -> tuple[str, str | None]:
    """(the directory a download init container writes, the Hub repo it fetches or None), read from its argv."""
    if init["command"] == ["aws"]:
        assert init["args"][:2] == ["s3", "sync"]
        return init["args"][3], None
    assert init["command"] == ["python3"] and init["args"][0] == "-c"
    # `python3 -c SCRIPT a b c`: sys.argv[i] is args[i + 1].
    script = init["args"][1]
    target = int(re.search(r"local_dir=sys\.argv\[(\d)\]", script).group(1))
    repo = int(re.search(r"repo_id=sys\.argv\[(\d)\]", script).group(1))
    return init["args"][1 + target], init["args"][1 + repo]


def model_argument(container: dict, engine_name: str) -> str:
    """What the engine is told to load."""
    if engine_name == "vllm":
        assert container["args"][0] == "serve"
        return container["args"][1]
    if engine_name == "tgi":
        return container["args"][container["args"].index("--model-id") + 1]
    return env_of(container)["HF_MODEL_ID"]["value"]


SOURCES = {"s3": "s3://weights-bucket/meta/llama-3.1-8b", "hf": "hf://meta-llama/Llama-3.1-8B-Instruct"}


def test_every_source_kind_the_api_accepts_is_covered():
    assert set(re.findall(r"([a-z0-9]+)://", MODEL_SOURCE)) == set(SOURCES)


@pytest.mark.parametrize("engine_name", ["vllm", "tgi", "djl-lmi"])
@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_weights_land_where_the_engine_reads_them(kind: str, engine_name: str):
    rendered = render(make_spec(model={"source": SOURCES[kind]}, engine={"name": engine_name}))
    container = engine(rendered)
    model = model_argument(container, engine_name)
    init = init_container(rendered, "download-model")
    if kind == "hf" and engine_name != "vllm":
        # TGI and DJL-LMI fetch from the Hub themselves (into HF_HOME on the models volume).
        assert init is None
        assert model == "meta-llama/Llama-3.1-8B-Instruct"
        return
    assert init is not None, f"{kind} weights for {engine_name} need a download init container"
    target, repo = download_target(init)
    if kind == "hf":
        assert repo == "meta-llama/Llama-3.1-8B-Instruct"
    written = on_volume(init, target)
    read = on_volume(container, model)
    assert written == read, f"{init['name']} writes {target} = {written}; the engine loads {model} = {read}"
    volumes = {v["name"]: v for v in pod_spec(rendered)["volumes"]}
    assert "emptyDir" in volumes[written[0]]


def test_vllm_downloads_hub_weights_with_the_token_and_revision():
    spec = make_spec(model={"revision": "abc123"}, engine={"hubTokenSecretRef": {"name": "hf-token", "key": "hf"}})
    rendered = render(spec, images=EngineImages(vllm="mirror.example/vllm:1"))
    init = init_container(rendered, "download-model")
    assert init["image"] == "mirror.example/vllm:1"  # the engine's image, which ships huggingface_hub
    assert init["args"][2:] == ["meta-llama/Llama-3.1-8B-Instruct", "abc123", "/models/weights",
                                "/models/weights/.neuroscale-weights-restored"]
    assert env_of(init)["HF_TOKEN"] == {"name": "HF_TOKEN",
                                        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "hf"}}}
    container = engine(rendered)
    # The engine loads the local copy: no token, no Hub, no revision.
    assert "HF_TOKEN" not in env_of(container)
    assert env_of(container)["HF_HUB_OFFLINE"]["value"] == "1"
    assert "--revision" not in container["args"]
    assert init_container(render(make_spec()), "download-model")["args"][3] == ""


def test_hub_token_is_a_secret_reference_never_a_value():
    spec = make_spec(engine={"name": "tgi", "hubTokenSecretRef": {"name": "hf-token", "key": "hf"}})
    token = env_of(engine(render(spec)))["HF_TOKEN"]
    assert token == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "hf"}}}
    assert "HF_TOKEN" not in env_of(engine(render(make_spec(engine={"name": "tgi"}))))
    assert "HF_TOKEN" not in env_of(init_container(render(), "download-model"))


def test_quantized_checkpoint_is_restored_with_the_compile_cache():
    spec = make_spec(model={"dtype": "int8"}, compileCache={"uri": "s3://cache-bucket/neuron/llama-int8"})
    rendered = render(spec)
    container = engine(rendered)
    config = json.loads(container["args"][container["args"].index("--additional-config") + 1])
    quantized = on_volume(container, config["override_neuron_config"]["quantized_checkpoints_path"])
    restore = init_container(rendered, "restore-compile-cache")
    restored = on_volume(restore, restore["args"][2])
    assert quantized[0] == restored[0]
    assert quantized[1].startswith(restored[1])


def test_quantizing_at_load_gets_host_memory_and_disk_for_the_full_precision_model():
    rendered = render(make_spec(model={"dtype": "int8"}))
    # The fp32 CPU load does not fit inf2.xlarge's 16 GiB.
    assert rendered.sizing.instance.name == "inf2.8xlarge"
    volumes = {v["name"]: v["emptyDir"].get("sizeLimit") for v in pod_spec(rendered)["volumes"]}
    gib = 2**30
    checkpoint_gib = 8.03e9 * 2 / gib  # bf16 checkpoint
    assert parse_quantity(volumes["models"])[0] / gib >= checkpoint_gib * 1.5
    assert parse_quantity(volumes["neuron-cache"])[0] / gib >= 2 * rendered.sizing.weights_gib + 10


def test_trn2_runs_the_vllm_neuron_plugin_image_and_flags():
    rendered = render(make_spec(accelerator={"families": ["trn2"]}, compileCache={"uri": "s3://cache-bucket/x"}))
    assert rendered.sizing.instance.family == "trn2"
    container = engine(rendered)
    assert container["image"].endswith(":0.24.0.1.1.0-neuronx-py313-sdk2.32.0-ubuntu24.04")
    assert "--block-size" not in container["args"] and "--num-gpu-blocks-override" not in container["args"]
    env = env_of(container)
    assert int(env["VLLM_NEURON_COMPILATION_TIMEOUT"]["value"]) >= 1200
    # The plugin's compile cache root is where the compile cache is restored.
    restore = init_container(rendered, "restore-compile-cache")
    assert on_volume(container, env["VLLM_CACHE_ROOT"]["value"]) == on_volume(restore, restore["args"][2])
    # The download uses the engine's (plugin) image too.
    assert init_container(rendered, "download-model")["image"] == container["image"]
    assert "vllm-neuronx:0.16.0" in engine(render())["image"]


def test_int8_on_trn2_is_refused_in_plain_words():
    with pytest.raises(ValueError, match="int8 weights on trn2"):
        render(make_spec(model={"dtype": "int8"}, accelerator={"families": ["trn2"]}))


def test_user_env_overrides_ours_by_name_and_is_appended_otherwise():
    spec = make_spec(engine={"env": [{"name": "NEURON_SKIP_EFA_AFFINITY", "value": "0"},
                                     {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}]})
    env = engine(render(spec))["env"]
    names = [item["name"] for item in env]
    assert names.count("NEURON_SKIP_EFA_AFFINITY") == 1
    assert env_of(engine(render(spec)))["NEURON_SKIP_EFA_AFFINITY"]["value"] == "0"
    assert names[-1] == "VLLM_LOGGING_LEVEL"


def test_user_args_are_list_elements_after_ours():
    spec = make_spec(engine={"args": ["--seed", "1; rm -rf /", "$(whoami)"]})
    args = engine(render(spec))["args"]
    assert args[-3:] == ["--seed", "1; rm -rf /", "$(whoami)"]
    assert engine(render(spec))["command"] == ["vllm"]


@pytest.mark.parametrize("engine_name", ["vllm", "tgi", "djl-lmi"])
def test_pods_run_unprivileged(engine_name: str):
    spec = make_spec(engine={"name": engine_name}, compileCache={"uri": "s3://cache-bucket/x"})
    pod = pod_spec(render(spec))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"] + pod["initContainers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["privileged"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["runAsNonRoot"] is True


def test_service_and_disruption_budget():
    rendered = render(make_spec(service={"type": "LoadBalancer", "port": 9000}))
    service = by_kind(rendered, "Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [{"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}]
    assert rendered.endpoint.endswith(":9000/v1")
    budget = by_kind(rendered, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_served_model_name_defaults_to_the_last_source_segment():
    assert served_model_name(make_spec()) == "Llama-3.1-8B-Instruct"
    assert served_model_name(make_spec(model={"source": "s3://bucket/models/llama-3.1-8b/"})) == "llama-3.1-8b"
    assert served_model_name(make_spec(model={"servedModelName": "chat"})) == "chat"
    rendered = render(make_spec(model={"servedModelName": "chat"}))
    assert rendered.served_model_name == "chat"
    assert engine(rendered)["args"][engine(rendered)["args"].index("--served-model-name") + 1] == "chat"


def test_revision_is_pinned_per_engine_and_refused_for_s3():
    vllm = render(make_spec(model={"revision": "abc123"}))
    assert init_container(vllm, "download-model")["args"][3] == "abc123"
    tgi_args = engine(render(make_spec(model={"revision": "abc123"}, engine={"name": "tgi"})))["args"]
    assert tgi_args[tgi_args.index("--revision") + 1] == "abc123"
    djl = engine(render(make_spec(model={"revision": "abc123"}, engine={"name": "djl-lmi"})))
    assert env_of(djl)["OPTION_REVISION"]["value"] == "abc123"
    with pytest.raises(ValueError, match="hf:// sources only"):
        render(make_spec(model={"source": "s3://bucket/llama-3.1-8b", "revision": "abc123"}))


def test_image_override_and_defaults():
    assert engine(render(make_spec(engine={"image": "mirror.example/vllm:1"})))["image"] == "mirror.example/vllm:1"
    images = EngineImages(tgi="mirror.example/tgi:2")
    assert engine(render(make_spec(engine={"name": "tgi"}), images=images))["image"] == "mirror.example/tgi:2"
    assert "vllm-neuronx" in engine(render())["image"]


def test_rendering_is_deterministic():
    spec = make_spec(compileCache={"uri": "s3://cache-bucket/llama"}, engine={"prefixCaching": True})
    assert render(spec).objects == render(spec).objects


def test_a_literal_hub_token_in_env_is_refused():
    spec = make_spec(engine={"env": [{"name": "HF_TOKEN", "value": "hf_abc"}]})
    with pytest.raises(ValueError, match="hubTokenSecretRef"):
        render(spec)

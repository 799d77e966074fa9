"""The model server's pod template: engine container, download and restore init containers, volumes, probes,
placement, security."""

from __future__ import annotations

from dataclasses import dataclass

from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.render import drain, labels
from neuroscale.render.adapters import adapter_downloads
from neuroscale.render.compile_cache import RESTORE_SCRIPT, RESTORED_WEIGHTS_FLAG, UPLOAD_SCRIPT
from neuroscale.render.downloads import Download
from neuroscale.render.engines import (
    COMPILED_ARTIFACTS_DIR,
    CONTAINER_PORT,
    MODELS_DIR,
    EngineImages,
    EngineLaunch,
)
from neuroscale.render.resources import STARTUP_PROBE_PERIOD_SECONDS, NEURON_RESOURCE, ReplicaResources
from neuroscale.render.speculative_decoding import speculator_download
from neuroscale.sizing.catalog import CATALOG

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
PORT_NAME = "http"
# The unprivileged user the pods run as (any non-zero id works: every writable path is a mounted volume).
RUN_AS_USER = 1000
# The weights the engine loads, on the `models` volume: synced from S3, or downloaded from the Hub for vLLM. Keep the
# path stable: NxD Inference records it in the compiled config (`_name_or_path`) and, on a compile hit, reloads the
# weights from it only if it exists (NxDI `checkpoint_loader_fn`; NEURON.md findings 6).
WEIGHTS_DIR = f"{MODELS_DIR}/weights"
HF_HOME = f"{MODELS_DIR}/huggingface"
# Downloads a Hub snapshot with huggingface_hub (shipped with vLLM in its image), arguments in argv, no shell.
# `original/*` holds Meta's duplicate consolidated checkpoint, which vLLM never loads (its default ignore pattern).
# Skipped when the compile-cache restore brought the weights with the artifacts (argv[4] exists): a hit needs no Hub.
HUB_DOWNLOAD = (
    "import os, sys; from huggingface_hub import snapshot_download; "
    "os.path.exists(sys.argv[4]) or snapshot_download(repo_id=sys.argv[1], revision=sys.argv[2] or None, "
    "local_dir=sys.argv[3], ignore_patterns=['original/*'])"
)
# Credentials the engines read; they may only come from a Secret.
TOKEN_VARIABLES = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"})


@dataclass(frozen=True)
class PodInputs:
    """Everything the pod template is built from, already decided."""

    name: str
    engine: str
    launch: EngineLaunch
    resources: ReplicaResources
    images: EngineImages
    service_account: str | None
    served_model_name: str
    # The compiled-artifact key (render/artifacts.py), its canonical inputs, and `<compileCache.uri>/<key>/`.
    artifact_key: str = ""
    artifact_manifest: str = ""
    artifact_prefix: str | None = None


def container_security() -> dict:
    """Least privilege: no capabilities, no escalation. Neuron devices come from the device plugin, not privilege."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
    }


def _models_mount() -> dict:
    """The `models` volume, at the same path in every container that touches weights."""
    return {"name": "models", "mountPath": MODELS_DIR}


def _init_container(name: str, image: str, command: list[str], args: list[str], env: list[dict],
                    mounts: list[dict], memory: str = "1Gi") -> dict:
    return {
        "name": name,
        "image": image,
        "command": command,
        "args": args,
        # Credential and download caches live under HOME; the images' own HOME is not writable for this user.
        "env": [{"name": "HOME", "value": "/tmp"}, *env],
        "volumeMounts": [*mounts, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": container_security(),
        "resources": {"requests": {"cpu": "1", "memory": memory}, "limits": {"memory": memory}},
    }


def _s3_sync(name: str, uri: str, target: str, mount: dict, image: str) -> dict:
    """An init container copying an S3 prefix to `target` inside `mount`: the AWS CLI, arguments as a list."""
    return _init_container(name, image, ["aws"], ["s3", "sync", uri, target, "--only-show-errors", "--no-progress"],
                           [], [mount])


def downloads_hub_weights(spec: ModelDeploymentSpec) -> bool:
    """vLLM gets hf:// weights from an init container: on a compile miss the plugin would otherwise save the model
    under `local-models/<id>` relative to its working directory (vllm-neuron `_save_pretrained_model`), which in the
    DLC is the root-owned /workspace/vllm while the pod runs as uid 1000; and a local path avoids the documented
    shard-on-load failure of Hub ids (vllm-user-guide-v1.rst, Known Issues 3; NEURON.md findings 5-7). TGI and
    DJL-LMI download into HF_HOME themselves (TGI's Neuron backend looks precompiled models up by Hub id)."""
    return spec.model.source.startswith("hf://") and spec.engine.name == "vllm"


def engine_model(spec: ModelDeploymentSpec) -> str:
    """The model as the engine loads it: the directory an init container filled, or a Hub id."""
    if spec.model.source.startswith("s3://") or downloads_hub_weights(spec):
        return WEIGHTS_DIR
    return spec.model.source.removeprefix("hf://")


def _token_env(spec: ModelDeploymentSpec) -> list[dict]:
    token = spec.engine.hub_token_secret_ref
    if token is None:
        return []
    return [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}}}]


def _hub_download(spec: ModelDeploymentSpec, image: str, download: Download) -> dict:
    """An init container downloading a Hub snapshot onto the models volume, with the hub token if the spec has one."""
    repo = download.source.removeprefix("hf://")
    env = [{"name": "HF_HOME", "value": HF_HOME}, {"name": "HF_HUB_DISABLE_PROGRESS_BARS", "value": "1"},
           *_token_env(spec)]
    # A restore that brought the weights leaves a flag in the target, and the download has nothing to do.
    return _init_container(download.container, image, ["python3"],
                           ["-c", HUB_DOWNLOAD, repo, download.revision or "", download.target,
                            f"{download.target}/{RESTORED_WEIGHTS_FLAG}"], env,
                           [_models_mount()], memory="2Gi")


def _download(spec: ModelDeploymentSpec, images: EngineImages, engine_image: str, download: Download) -> dict:
    if download.source.startswith("s3://"):
        return _s3_sync(download.container, download.source, download.target, _models_mount(), images.aws_cli)
    return _hub_download(spec, engine_image, download)


def _compile_cache_mount(read_only: bool = False) -> dict:
    mount: dict = {"name": "neuron-cache", "mountPath": COMPILED_ARTIFACTS_DIR}
    if read_only:
        mount["readOnly"] = True
    return mount


def cached_weights_dir(spec: ModelDeploymentSpec) -> str:
    """The weights that travel with the compiled artifacts: the Hub download (an s3:// source is in S3 already,
    and TGI and DJL-LMI fetch Hub weights themselves); '' when none do."""
    return WEIGHTS_DIR if downloads_hub_weights(spec) else ""


def _restore_compile_cache(spec: ModelDeploymentSpec, prefix: str, image: str) -> dict:
    """Restore the key's artifacts when its marker says they are complete (render/compile_cache.py)."""
    weights = cached_weights_dir(spec)
    mounts = [_compile_cache_mount(), *([_models_mount()] if weights else [])]
    return _init_container("restore-compile-cache", image, ["bash", "-c", RESTORE_SCRIPT],
                           ["restore-compile-cache", prefix, COMPILED_ARTIFACTS_DIR, weights], [], mounts)


def upload_compile_cache(spec: ModelDeploymentSpec, inputs: PodInputs, prefix: str, image: str) -> dict:
    """The sidecar that uploads this pod's artifacts under the key after a miss, once the engine is ready."""
    weights = cached_weights_dir(spec)
    container = _init_container(
        "upload-compile-cache", image, ["bash", "-c", UPLOAD_SCRIPT],
        ["upload-compile-cache", prefix, COMPILED_ARTIFACTS_DIR, weights, str(CONTAINER_PORT),
         inputs.launch.health_path],
        [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
         {"name": "MANIFEST", "value": inputs.artifact_manifest}],
        [_compile_cache_mount(read_only=True),
         *([{**_models_mount(), "readOnly": True}] if weights else [])],
    )
    # Mostly waiting, so the request is small (the engine's memory is sized to the node's share); a sync of tens of
    # GiB holds the CLI's buffers (10 parts of 8 MiB at a time), well within the limit, and may use idle CPU.
    container["resources"] = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    return container


def init_containers(spec: ModelDeploymentSpec, images: EngineImages, engine_image: str,
                    artifact_prefix: str | None = None) -> list[dict]:
    """Weights and the compile cache are in place before the engine starts, so it neither downloads nor compiles.

    Every container mounts `models` at MODELS_DIR and the weights land in WEIGHTS_DIR, the engine's model argument;
    a speculative head and LoRA adapters land in their own directories next to it. The compile cache is restored
    first: when it brings the Hub weights, the download that follows has nothing to do.
    """
    found = []
    if artifact_prefix is not None:
        found.append(_restore_compile_cache(spec, artifact_prefix, images.aws_cli))
    if spec.model.source.startswith("s3://"):
        found.append(_s3_sync("download-model", spec.model.source, WEIGHTS_DIR, _models_mount(), images.aws_cli))
    elif downloads_hub_weights(spec):
        found.append(_hub_download(spec, engine_image,
                                   Download("download-model", spec.model.source, spec.model.revision, WEIGHTS_DIR)))
    # The speculator's and the adapters' checkpoints: vLLM reads them from local paths only (render/adapters.py).
    for download in (*speculator_download(spec.speculative_decoding), *adapter_downloads(spec.adapters)):
        found.append(_download(spec, images, engine_image, download))
    return found


def engine_args(spec: ModelDeploymentSpec, launch: EngineLaunch) -> list[str]:
    """The engine's arguments: the engine's own, then the user's."""
    return [*launch.args, *spec.engine.args]


def engine_env(spec: ModelDeploymentSpec, launch: EngineLaunch) -> list[dict]:
    """Engine settings, then the hub token (a secret reference, never a value), then the user's own variables.

    A user variable with the same name as one of ours replaces it: the documented escape hatch for engine tuning.
    """
    env: list[dict] = [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HOME", "value": HF_HOME}, *launch.env]
    if not downloads_hub_weights(spec):
        # With downloaded weights the token goes to the download init container only.
        env += _token_env(spec)
    literal_tokens = sorted({var.name for var in spec.engine.env} & TOKEN_VARIABLES)
    if literal_tokens:
        raise ValueError(
            f"engine.env sets {', '.join(literal_tokens)} as a literal value; put the token in a Secret and "
            "reference it with engine.hubTokenSecretRef"
        )
    user = {var.name: var.value for var in spec.engine.env}
    merged = [{"name": item["name"], "value": user.pop(item["name"])} if item["name"] in user else item
              for item in env]
    return merged + [{"name": key, "value": value} for key, value in user.items()]


def _probe(path: str, period: int, timeout: int, failures: int) -> dict:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def engine_image(spec: ModelDeploymentSpec, inputs: PodInputs, instance_type: str) -> str:
    """The spec's image, else the engine's image for the instance family (vLLM differs on trn2)."""
    return spec.engine.image or inputs.images.for_engine(inputs.engine,  # type: ignore[arg-type]
                                                         CATALOG[instance_type].family)


def engine_container(spec: ModelDeploymentSpec, inputs: PodInputs, image: str) -> dict:
    launch, res = inputs.launch, inputs.resources
    container: dict = {"name": "engine", "image": image}
    container["command"] = list(launch.command)
    args = engine_args(spec, launch)
    if args:
        container["args"] = args
    container.update(
        ports=[{"name": PORT_NAME, "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        env=engine_env(spec, launch),
        resources={"requests": res.requests(), "limits": res.limits()},
        volumeMounts=[
            {"name": "dshm", "mountPath": "/dev/shm"},
            _models_mount(),
            _compile_cache_mount(),
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        # Loading and compiling take minutes: the startup probe holds off liveness until the server answers.
        startupProbe=_probe(launch.health_path, STARTUP_PROBE_PERIOD_SECONDS, 5,
                            res.startup_seconds // STARTUP_PROBE_PERIOD_SECONDS),
        # Not ready once draining (render/drain.py), so a scale-down sends it no new request.
        readinessProbe=drain.readiness_probe(CONTAINER_PORT, launch.health_path),
        livenessProbe=_probe(launch.health_path, 30, 10, 5),
        lifecycle={"preStop": drain.pre_stop(res.drain, inputs.engine, CONTAINER_PORT, launch.metrics_path)},
        securityContext=container_security(),
    )
    return container


def _volumes(res: ReplicaResources) -> list[dict]:
    return [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": res.shm}},
        {"name": "models", "emptyDir": {"sizeLimit": res.models_disk}},
        {"name": "neuron-cache", "emptyDir": {"sizeLimit": res.compile_cache_disk}},
        {"name": "tmp", "emptyDir": {}},
    ]


def _tolerations(spec: ModelDeploymentSpec) -> list[dict]:
    neuron = {"key": NEURON_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    extra = [t.model_dump(exclude_none=True) for t in spec.scheduling.tolerations]
    return [neuron, *(t for t in extra if t != neuron)]


def pod_template(spec: ModelDeploymentSpec, inputs: PodInputs, instance_type: str) -> dict:
    annotations = {
        labels.SCRAPE: "true",
        labels.SCRAPE_PORT: str(CONTAINER_PORT),
        labels.SCRAPE_PATH: inputs.launch.metrics_path,
        labels.SERVED_MODEL: inputs.served_model_name,
    }
    if inputs.artifact_key:
        annotations[labels.ARTIFACT_KEY] = inputs.artifact_key
    if inputs.artifact_prefix is not None:
        annotations[labels.COMPILE_CACHE] = inputs.artifact_prefix
    pod_security = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        # Volumes (S3 restores, caches) become group-writable for the engine's user.
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod: dict = {}
    if inputs.service_account is not None:
        pod["serviceAccountName"] = inputs.service_account
    # IRSA and EKS Pod Identity mount their own token; the Kubernetes API token is never needed by an engine.
    pod["automountServiceAccountToken"] = False
    if spec.accelerator.scheduler_name:
        pod["schedulerName"] = spec.accelerator.scheduler_name
    if spec.scheduling.priority_class_name:
        pod["priorityClassName"] = spec.scheduling.priority_class_name
    pod.update(
        nodeSelector={**spec.scheduling.node_selector, INSTANCE_TYPE_LABEL: instance_type},
        tolerations=_tolerations(spec),
        securityContext=pod_security,
        # The preStop drain lets in-flight requests finish before SIGTERM, then the engine stops.
        terminationGracePeriodSeconds=inputs.resources.drain.grace_seconds,
    )
    image = engine_image(spec, inputs, instance_type)
    inits = init_containers(spec, inputs.images, image, inputs.artifact_prefix)
    if inits:
        pod["initContainers"] = inits
    containers = [engine_container(spec, inputs, image)]
    if inputs.artifact_prefix is not None:
        containers.append(upload_compile_cache(spec, inputs, inputs.artifact_prefix, inputs.images.aws_cli))
    pod.update(containers=containers, volumes=_volumes(inputs.resources))
    return {
        "metadata": {"labels": labels.common_labels(inputs.name, inputs.engine), "annotations": annotations},
        "spec": pod,
    }

"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and
kwok keeping fake Neuron nodes (and the pods scheduled onto them) Running and Ready.

The binaries come from `scripts/build-control-plane.sh` (built once from their Go modules, cached by version).
Certificates are generated per run; every component talks TLS to the API server with a client certificate, and the
API server authorizes with RBAC, so a test that runs the operator under a ServiceAccount token meets the real
authorizer. `python -m tests.support.controlplane` starts one and prints its kubeconfig, for poking at by hand.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-control-plane.sh"
SERVICE_CIDR = "10.96.0.0/24"
NEURON_TAINT = {"key": "aws.amazon.com/neuron", "value": "present", "effect": "NoSchedule"}
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")

# name → instance type, two of the common inference shapes plus one trn1 and a plain CPU node for gateways and Redis.
NODES = {
    "inf2-xlarge-a": "inf2.xlarge",
    "inf2-8xlarge-a": "inf2.8xlarge",
    "inf2-8xlarge-b": "inf2.8xlarge",
    "inf2-48xlarge-a": "inf2.48xlarge",
    "trn1-2xlarge-a": "trn1.2xlarge",
    "trn1-32xlarge-a": "trn1.32xlarge",
    "cpu-a": "m6i.2xlarge",
    "cpu-b": "m6i.2xlarge",
}


def binaries() -> Path:
    """The directory holding the built control plane; builds it first when the cache lacks it (minutes, once)."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, capture_output=True, text=True)
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_node(name: str, instance_type: str) -> dict[str, Any]:
    """A Node as an EKS managed node group registers it: instance-type and zone labels, Neuron capacity and taint."""
    from neuroscale.sizing import CATALOG

    labels = {
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": instance_type, "topology.kubernetes.io/zone": "us-east-1a",
        "topology.kubernetes.io/region": "us-east-1", "type": "kwok",
    }
    capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "500Gi"}
    taints = []
    instance = CATALOG.get(instance_type)
    if instance is not None:
        capacity.update({
            "cpu": str(instance.vcpu), "memory": f"{instance.memory_gib}Gi",
            "aws.amazon.com/neuron": str(instance.devices), "aws.amazon.com/neuroncore": str(instance.neuron_cores),
        })
        labels["eks.amazonaws.com/nodegroup"] = instance.family
        taints.append(NEURON_TAINT)
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {FAKE_NODE_ANNOTATION[0]: FAKE_NODE_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": capacity,
                   "nodeInfo": {"kubeletVersion": "fake", "kubeProxyVersion": "fake", "architecture": "amd64",
                                "operatingSystem": "linux"}},
    }


@dataclass
class Certificates:
    """A throwaway CA, the API server's serving certificate, an admin client certificate, the ServiceAccount key."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def path(self, name: str) -> Path:
        return self.dir / name

    @classmethod
    def generate(cls, directory: Path) -> Certificates:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import NameOID

        directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.timezone.utc)

        def write_key(key: Any, name: str) -> None:
            (directory / name).write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

        def name_of(cn: str, org: str | None = None) -> x509.Name:
            parts = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
            if org:
                parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
            return x509.Name(parts)

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = name_of("neuroscale-test-ca")
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
              .not_valid_after(now + dt.timedelta(days=7))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, encipher_only=False, decipher_only=False),
                             critical=True)
              .sign(ca_key, hashes.SHA256()))
        (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        write_key(ca_key, "ca.key")

        def issue(name: str, subject: x509.Name, *, server: bool) -> None:
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
            if server:
                service_ip = next(ipaddress.ip_network(SERVICE_CIDR).hosts())
                builder = builder.add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default"),
                    x509.DNSName("kubernetes.default.svc"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(service_ip),
                ]), critical=False).add_extension(
                    x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            else:
                builder = builder.add_extension(
                    x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            write_key(key, f"{name}.key")

        issue("apiserver", name_of("kube-apiserver"), server=True)
        issue("admin", name_of("neuroscale-test-admin", "system:masters"), server=False)
        # Each component under its own identity, bound to its built-in ClusterRole by the default RBAC policy.
        issue("controller-manager", name_of("system:kube-controller-manager"), server=False)
        issue("scheduler", name_of("system:kube-scheduler"), server=False)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_key(sa_key, "service-account.key")
        (directory / "service-account.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return cls(directory)


@dataclass
class ControlPlane:
    """The running processes of one control plane, and how to reach it."""

    bin_dir: Path
    work: Path
    certs: Certificates = field(init=False)
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)  # components that exited on their own and were restarted
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def kubeconfig(self) -> Path:
        return self.work / "admin.kubeconfig"

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        self.work.mkdir(parents=True, exist_ok=True)
        self.certs = Certificates.generate(self.work / "pki")
        for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"):
            self.ports[name] = free_port()
        for identity in ("admin", "controller-manager", "scheduler"):
            self._write_kubeconfig(self.work / f"{identity}.kubeconfig", identity)
        self.kubeconfig.write_text((self.work / "admin.kubeconfig").read_text())
        self.start_component("etcd")
        self._wait_http(f"http://127.0.0.1:{self.ports['etcd']}/health", "etcd")
        self.start_component("kube-apiserver")
        self.wait_ready()
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            self.start_component(component)
        for component in ("controller-manager", "scheduler"):
            self._wait_http(f"https://127.0.0.1:{self.ports[component]}/healthz", f"kube-{component}", tls=True)
        self._register_nodes()
        self._supervisor = threading.Thread(target=self._supervise, name="control-plane-supervisor", daemon=True)
        self._supervisor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for name in reversed(list(self.processes)):
            self.stop_component(name)

    def _supervise(self) -> None:
        """Start again a component that exited on its own, as the kubelet does for a control plane's static pods
        (the controller-manager exits when the API server goes away while it is still starting its controllers)."""
        while not self._stopping.wait(0.5):
            with self._lock:
                for name, process in list(self.processes.items()):
                    if process.poll() is not None:
                        self.restarts[name] = self.restarts.get(name, 0) + 1
                        self.start_component(name)

    def start_component(self, name: str) -> None:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process for its lifetime
        self.processes[name] = subprocess.Popen(
            [str(self.bin_dir / name), *self._args(name)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def stop_component(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def restart(self, name: str, *, sig: int = signal.SIGTERM) -> None:
        """Stop one component (SIGTERM, or SIGKILL for a crash) and start it again with the same data."""
        with self._lock:
            self.stop_component(name, sig)
            self.start_component(name)
        if name in ("etcd", "kube-apiserver"):
            self.wait_ready()

    def wait_ready(self, timeout: float = 90.0) -> None:
        self._wait_http(f"{self.url}/readyz", "kube-apiserver", timeout=timeout, tls=True)

    def log(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text(errors="replace")

    # --- wiring ----------------------------------------------------------------------------------------------

    def _args(self, name: str) -> list[str]:
        c, p, w = self.certs.path, self.ports, self.work
        if name == "etcd":
            return [
                "--name=default", f"--data-dir={w / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{p['etcd']}",
                f"--advertise-client-urls=http://127.0.0.1:{p['etcd']}",
                f"--listen-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
                f"--initial-cluster=default=http://127.0.0.1:{p['etcd-peer']}",
                # Throwaway data: skipping fsync keeps the suite fast on a shared disk.
                "--unsafe-no-fsync", "--log-level=warn", "--quota-backend-bytes=4294967296",
            ]
        if name == "kube-apiserver":
            return [
                f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={p['apiserver']}",
                f"--tls-cert-file={c('apiserver.crt')}", f"--tls-private-key-file={c('apiserver.key')}",
                f"--client-ca-file={self.certs.ca}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={c('service-account.pub')}",
                f"--service-account-signing-key-file={c('service-account.key')}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC", "--allow-privileged=true",
                # No kubelet answers on the node addresses kwok reports; nothing here needs the endpoint reconciler.
                "--endpoint-reconciler-type=none",
                "--profiling=false", "--v=0",
            ]
        if name == "kube-controller-manager":
            return [
                f"--kubeconfig={w / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={w / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={w / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1", f"--secure-port={p['controller-manager']}",
                "--leader-elect=false", "--use-service-account-credentials=true",
                f"--service-account-private-key-file={c('service-account.key')}", f"--root-ca-file={self.certs.ca}",
                f"--cluster-signing-cert-file={self.certs.ca}", f"--cluster-signing-key-file={c('ca.key')}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Fast garbage collection and namespace deletion keep the suite short.
                "--concurrent-gc-syncs=10", "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                "--v=0",
            ]
        if name == "kube-scheduler":
            return [
                f"--kubeconfig={w / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={w / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={w / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1", f"--secure-port={p['scheduler']}", "--leader-elect=false", "--v=0",
            ]
        if name == "kwok":
            return [
                f"--kubeconfig={w / 'admin.kubeconfig'}", f"--config={self.bin_dir / 'kwok-stages.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={'='.join(FAKE_NODE_ANNOTATION)}",
                f"--server-address=127.0.0.1:{p['kwok']}", "--cidr=10.244.0.0/16", "--node-ip=10.244.0.1",
                # The lease stages renew node leases only when a lease duration is set; without one the node
                # status is refreshed every 10-20 minutes and the controller-manager sees every node NotReady.
                "--node-lease-duration-seconds=40",
            ]
        raise ValueError(f"unknown component {name}")

    def _write_kubeconfig(self, path: Path, identity: str) -> None:
        c = self.certs.path
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "neuroscale-test",
            "clusters": [{"name": "neuroscale-test",
                          "cluster": {"server": self.url, "certificate-authority": str(self.certs.ca)}}],
            "users": [{"name": identity,
                       "user": {"client-certificate": str(c(f"{identity}.crt")),
                                "client-key": str(c(f"{identity}.key"))}}],
            "contexts": [{"name": "neuroscale-test",
                          "context": {"cluster": "neuroscale-test", "user": identity, "namespace": "default"}}],
        }))

    def _wait_http(self, url: str, what: str, *, timeout: float = 60.0, tls: bool = False) -> None:
        context = None
        if tls:
            context = ssl.create_default_context(cafile=str(self.certs.ca))
            context.load_cert_chain(self.certs.path("admin.crt"), self.certs.path("admin.key"))
            if url != f"{self.url}/readyz":  # the controller-manager and scheduler serve self-signed certificates
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            process = self.processes.get(what)
            if process is not None and process.poll() is not None and not self.restarts:
                raise RuntimeError(f"{what} exited with {process.returncode}:\n{self.log(what)[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as response:
                    if response.status == 200:
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready within {timeout}s: {last}")

    def _register_nodes(self) -> None:
        import kubernetes

        api = self.api_client()
        core = kubernetes.client.CoreV1Api(api)
        for name, instance_type in NODES.items():
            node = fake_node(name, instance_type)
            status = node.pop("status")
            created = core.create_node(node)
            # Capacity lives in status, which only the status subresource (a kubelet's job; here ours) may write.
            core.patch_node_status(created.metadata.name, {"status": status})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            nodes = core.list_node().items
            ready = [n for n in nodes if any(c.type == "Ready" and c.status == "True"
                                             for c in n.status.conditions or ())]
            if len(ready) == len(NODES):
                return
            time.sleep(0.3)
        raise RuntimeError(f"kwok did not make the fake nodes Ready:\n{self.log('kwok')[-3000:]}")

    def api_client(self) -> Any:
        import kubernetes

        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        return kubernetes.client.ApiClient(configuration)


@contextlib.contextmanager
def control_plane(work: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(bin_dir=binaries(), work=work)
    try:
        yield plane.start()
    finally:
        plane.stop()


if __name__ == "__main__":
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/neuroscale-control-plane")
    shutil.rmtree(directory, ignore_errors=True)
    # SIGTERM stops the components too (they run in their own sessions and would outlive this process).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with control_plane(directory) as plane:
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    os._exit(0)

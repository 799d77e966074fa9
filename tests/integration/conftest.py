"""Integration fixtures: the kmock Kubernetes emulator on loopback with a kubeconfig pointing at it."""

import pytest

from tests.support.kube import emulator, write_kubeconfig


@pytest.fixture
async def cluster(tmp_path):
    """(emulator, kubeconfig path): our kinds declared, served on a free loopback port."""
    async with emulator() as server:
        yield server, write_kubeconfig(tmp_path / "kubeconfig", str(server.url))

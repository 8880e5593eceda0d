"""Where vnode's API connections come from, and that each one is independent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RunningKubeAPI
from vnode.errors import ConfigError
from vnode.node import kube
from vnode.settings import KubeSettings


def test_the_kubeconfig_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert kube._kubeconfig(KubeSettings(Path("/x/kubeconfig"))) == "/x/kubeconfig"


def test_in_cluster_before_the_home_kubeconfig(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("{}")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert kube._kubeconfig(KubeSettings()) is None
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert kube._kubeconfig(KubeSettings()) == str(tmp_path / ".kube" / "config")


def test_nothing_to_connect_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="no Kubernetes configuration"):
        kube._kubeconfig(KubeSettings())


async def test_outside_a_cluster_in_cluster_config_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ConfigError, match="in-cluster service account"):
        await kube.connect(KubeSettings())


async def test_two_independent_clients(kubeapi: RunningKubeAPI) -> None:
    settings = KubeSettings(kubeapi.kubeconfig)
    main = await kube.connect(settings, purpose="main")
    lease = await kube.connect(settings, purpose="lease")
    try:
        assert main.rest_client is not lease.rest_client
        assert main.user_agent.startswith("vnode/") and main.user_agent.endswith("(main)")
        ns = await kube.request(lease, "GET", kube.path("v1", "namespaces", "kube-node-lease"))
        assert ns["metadata"]["name"] == "kube-node-lease"
        with pytest.raises(kube.ApiError) as caught:
            await kube.request(main, "GET", kube.path("v1", "nodes", "nope"))
        assert caught.value.not_found
    finally:
        await main.close()
        await lease.close()


def test_paths() -> None:
    assert kube.path("v1", "nodes", "n1", subresource="status") == "/api/v1/nodes/n1/status"
    assert (
        kube.path("coordination.k8s.io/v1", "leases", "n1", namespace="kube-node-lease")
        == "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1"
    )

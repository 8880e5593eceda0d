"""Build the instance a COS VM would boot from, and talk to its kubelet, for VM tests.

The user-data is a hand-written cloud-config in the shape vnode's bootstrap produces:
the KubeletConfiguration, the serving certificate and client CA, a systemd unit running
``/usr/bin/kubelet --config=...`` started by ``runcmd``, and static pod manifests.
"""

from __future__ import annotations

import base64
import random
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.refdata import KUBELET as REFERENCE
from vnode.certs import CertificateAuthority, KeyPair

NODE = "standalone-node"


def reference_json(rel: str) -> Any:
    import json

    return json.loads((REFERENCE / rel).read_text())


def reference_manifest(name: str) -> str:
    return (REFERENCE / "manifests" / name).read_text()


@dataclass
class Pki:
    client_ca: CertificateAuthority
    client: KeyPair
    serving_ca: CertificateAuthority
    serving: KeyPair
    ip: str

    @classmethod
    def create(cls, ip: str, hostname: str) -> Pki:
        client_ca = CertificateAuthority.create("vnode-kubelet-client-ca")
        serving_ca = CertificateAuthority.create("vnode-kubelet-serving-ca")
        return cls(
            client_ca=client_ca,
            client=client_ca.issue(
                "kube-apiserver-kubelet-client", organizations=["system:masters"], client=True
            ),
            serving_ca=serving_ca,
            serving=serving_ca.issue(hostname, server_names=[ip, hostname], server=True),
            ip=ip,
        )


def kubelet_config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "port": 10250,
        "readOnlyPort": 0,
        "staticPodPath": "/etc/kubernetes/manifests",
        "fileCheckFrequency": "5s",
        "tlsCertFile": "/etc/kubernetes/pki/kubelet-serving.crt",
        "tlsPrivateKeyFile": "/etc/kubernetes/pki/kubelet-serving.key",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "systemd",
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
    }
    cfg.update(overrides)
    return cfg


UNIT = """[Unit]
Description=kubelet for the vnode pod
After=containerd.service

[Service]
ExecStart=/usr/bin/kubelet --config=/etc/kubernetes/kubelet-config.yaml \\
    --hostname-override={hostname} --v=2
Restart=always

[Install]
WantedBy=multi-user.target
"""


def user_data(
    pki: Pki,
    *,
    config: dict[str, Any] | None = None,
    manifests: dict[str, str] | None = None,
    hostname: str = NODE,
    runcmd: list[Any] | None = None,
) -> str:
    files = [
        {
            "path": "/etc/kubernetes/kubelet-config.yaml",
            "permissions": "0644",
            "content": yaml.safe_dump(config or kubelet_config()),
        },
        {"path": "/etc/kubernetes/pki/ca.crt", "content": pki.client_ca.cert_pem.decode()},
        {
            "path": "/etc/kubernetes/pki/kubelet-serving.crt",
            "content": pki.serving.cert_pem.decode(),
        },
        {
            "path": "/etc/kubernetes/pki/kubelet-serving.key",
            "permissions": "0600",
            "encoding": "b64",
            "content": base64.b64encode(pki.serving.key_pem).decode(),
        },
        {"path": "/etc/systemd/system/kubelet.service", "content": UNIT.format(hostname=hostname)},
    ]
    for name, text in (manifests or {}).items():
        files.append({"path": f"/etc/kubernetes/manifests/{name}", "content": text, "defer": True})
    doc = {
        "write_files": files,
        "runcmd": runcmd
        if runcmd is not None
        else [["systemctl", "daemon-reload"], ["systemctl", "start", "kubelet.service"]],
    }
    return "#cloud-config\n" + yaml.safe_dump(doc)


def random_ip() -> str:
    return f"127.{random.randint(64, 250)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def instance(name: str, ip: str, user_data_text: str, **extra_meta: str) -> dict[str, Any]:
    items = [{"key": "user-data", "value": user_data_text}]
    items += [{"key": k, "value": v} for k, v in extra_meta.items()]
    return {
        "id": str(random.randint(10**17, 10**18)),
        "name": name,
        "zone": "https://www.googleapis.com/compute/v1/projects/vnode-test/zones/us-central1-a",
        "status": "RUNNING",
        "labels": {"vnode-pod-uid": "pod-uid-1"},
        "networkInterfaces": [{"networkIP": ip}],
        "metadata": {"items": items},
    }


@dataclass
class Client:
    """HTTPS to the VM kubelet with (or without) a client certificate."""

    base: str
    pki: Pki
    tmp: Path
    cert: KeyPair | None = None
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.pki.serving_ca.cert_pem.decode())
        if self.cert is not None:
            c, k = self.cert.write(self.tmp, f"client-{id(self)}")
            ctx.load_cert_chain(str(c), str(k))
        return ctx

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl_context()),
            auto_decompress=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        async with self._session.get(self.base + path) as resp:
            body = await resp.read()
            return resp.status, dict(resp.headers), body


# -- comparing /pods with the captures --------------------------------------------------

_TIMES = {"lastTransitionTime", "startTime", "startedAt", "finishedAt"}


def normalize(obj: Any) -> Any:
    """Blank what differs between runs (times, IDs, the UID, back-off length), keep the rest."""
    import re

    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if k in _TIMES and isinstance(v, str) and not v.startswith("1970-"):
                out[k] = "<time>"
            elif k == "containerID":
                out[k] = "<id>"
            elif k == "imageID" and v:
                out[k] = "<image>"
            elif k == "message" and isinstance(v, str) and v.startswith("back-off "):
                out[k] = re.sub(
                    r"^back-off \S+ (.*)\([0-9a-f]{32}\)$", r"back-off <d> \1(<uid>)", v
                )
            else:
                out[k] = normalize(v)
        return out
    if isinstance(obj, list):
        return [normalize(x) for x in obj]
    return obj


def captured_status(capture: str, pod: str) -> Any:
    body = reference_json(f"pods/{capture}")
    item = next(i for i in body["items"] or [] if i["metadata"]["name"] == pod)
    return normalize(item["status"])


async def pod_item(client: Client, name: str) -> dict[str, Any] | None:
    import json

    status, _, body = await client.get("/pods")
    assert status == 200
    return next((i for i in json.loads(body)["items"] or [] if i["metadata"]["name"] == name), None)


async def wait_for_capture(client: Client, capture: str, pod: str, limit: float = 20.0) -> None:
    """Poll /pods until the pod's status equals the captured one (normalised, key order too)."""
    import asyncio
    import json

    want = json.dumps(captured_status(capture, pod))
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        item = await pod_item(client, pod)
        got = json.dumps(normalize(item["status"])) if item else "absent"
        if got == want:
            return
        if not seen or seen[-1] != got:
            seen.append(got)
        await asyncio.sleep(0.02)
    raise AssertionError(f"{pod} never matched {capture}:\nwant {want}\nlast seen {seen[-3:]}")

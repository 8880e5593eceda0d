"""The sandbox cluster's credentials, written into its state directory.

One cluster CA signs the API server's serving certificate, the admin client certificate
(``CN=admin, O=system:masters``, as kubeadm's admin.conf) and the API server's
kubelet-client certificate (``CN=kube-apiserver-kubelet-client, O=system:masters``, the
identity the real API server presents to kubelets for ``pods/log``). Service-account
tokens are signed with a separate RSA key, as the real ``--service-account-key-file``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vnode.certs import CertificateAuthority

SERVER_NAMES = (
    "localhost",
    "127.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class ClusterPKI:
    directory: Path
    ca: CertificateAuthority

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    def path(self, name: str) -> tuple[Path, Path]:
        return self.directory / f"{name}.crt", self.directory / f"{name}.key"

    @property
    def sa_key_file(self) -> Path:
        return self.directory / "sa.key"

    def server_ssl_context(self) -> ssl.SSLContext:
        """TLS for the API server: asks for (but does not require) a client certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_file))
        ctx.load_cert_chain(*self.path("apiserver"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def kubelet_client_ssl_context(self) -> ssl.SSLContext:
        """TLS toward kubelets: our client certificate; theirs is not verified.

        The reference cluster runs without ``--kubelet-certificate-authority``, so the
        real API server does not verify kubelet serving certificates either.
        """
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(*self.path("kubelet-client"))
        return ctx

    def issue_client(
        self, name: str, common_name: str, organizations: tuple[str, ...] = ()
    ) -> tuple[Path, Path]:
        """Issue (and write as ``name.crt``/``name.key``) one more client certificate."""
        pair = self.ca.issue(common_name, organizations=organizations, client=True)
        return pair.write(self.directory, name)


def create(directory: Path, server_names: tuple[str, ...] = SERVER_NAMES) -> ClusterPKI:
    """Make a new CA and every credential the sandbox cluster needs under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create("sandbox-kubernetes-ca")
    ca.pair.write(directory, "ca")
    ca.issue("kube-apiserver", server_names=server_names, server=True).write(directory, "apiserver")
    ca.issue("admin", organizations=("system:masters",), client=True).write(directory, "admin")
    ca.issue("kube-apiserver-kubelet-client", organizations=("system:masters",), client=True).write(
        directory, "kubelet-client"
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = directory / "sa.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ClusterPKI(directory, ca)


def write_kubeconfig(path: Path, server: str, pki: ClusterPKI, user: str = "admin") -> Path:
    """An admin kubeconfig with embedded paths (not data), readable by kubectl and clients."""
    import yaml

    cert, key = pki.path(user)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sandbox",
                "cluster": {"server": server, "certificate-authority": str(pki.ca_file)},
            }
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [
            {
                "name": "sandbox",
                "context": {"cluster": "sandbox", "user": user, "namespace": "default"},
            }
        ],
        "current-context": "sandbox",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path

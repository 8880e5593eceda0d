"""vnode's own PKI for talking to the VM kubelets.

Two CAs, kept in ``GCESettings.ca_dir`` and created on first start:

- the **client CA** signs exactly one certificate, vnode's client certificate. Every
  VM kubelet is configured with it as its x509 client CA, so vnode is the only caller
  that gets past its TLS client authentication.
- the **serving CA** signs one serving certificate per VM, for the VM's name (the IP is
  not known before the insert, so vnode connects to the IP and checks the name). vnode
  trusts only this CA for the VM kubelets. A VM's serving key travels in its metadata;
  keeping the CAs apart means such a key can never be taken for a client identity.

The directory must survive restarts of vnode, or it can no longer reach the VMs it made.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from vnode.certs import CertificateAuthority, KeyPair
from vnode.errors import ConfigError

CLIENT_CA = "client-ca"
SERVING_CA = "serving-ca"
CLIENT = "vnode-client"
CLIENT_CN = "vnode"


def default_ca_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "vnode" / "gce-ca"


@dataclass
class VnodePKI:
    directory: Path
    client_ca: CertificateAuthority
    serving_ca: CertificateAuthority
    client_cert: Path
    client_key: Path

    @classmethod
    def load_or_create(cls, directory: Path) -> VnodePKI:
        """Load the CAs from ``directory``, creating what is missing (keys mode 0600)."""
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            client_ca = _ca(directory, CLIENT_CA, "vnode VM-kubelet client CA")
            serving_ca = _ca(directory, SERVING_CA, "vnode VM-kubelet serving CA")
            cert, key = directory / f"{CLIENT}.crt", directory / f"{CLIENT}.key"
            if not (cert.is_file() and key.is_file()):
                pair = client_ca.issue(CLIENT_CN, client=True, days=3650)
                cert, key = _write(pair, directory, CLIENT)
        except OSError as e:
            raise ConfigError(f"cannot use the CA directory {directory}: {e}") from e
        return cls(directory, client_ca, serving_ca, cert, key)

    def serving_pair(self, vm_name: str) -> KeyPair:
        """A serving certificate for the VM kubelet of ``vm_name`` (valid a year)."""
        return self.serving_ca.issue(vm_name, server_names=[vm_name], server=True, days=365)

    @property
    def client_ca_pem(self) -> str:
        return self.client_ca.cert_pem.decode()

    def ssl_context(self) -> ssl.SSLContext:
        """Client TLS for the VM kubelets: trust the serving CA, present vnode's cert."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.load_verify_locations(cadata=self.serving_ca.cert_pem.decode())
        ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        ctx.check_hostname = True
        return ctx


def _ca(directory: Path, name: str, common_name: str) -> CertificateAuthority:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    if cert.is_file() and key.is_file():
        return CertificateAuthority.load(cert, key)
    ca = CertificateAuthority.create(common_name)
    _write(ca.pair, directory, name)
    return ca


def _write(pair: KeyPair, directory: Path, name: str) -> tuple[Path, Path]:
    """Write atomically: a crash mid-write must not leave half a key behind."""
    tmp = directory / f".{name}.tmp"
    tmp.mkdir(exist_ok=True)
    cert_tmp, key_tmp = pair.write(tmp, name)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    key_tmp.replace(key)
    cert_tmp.replace(cert)
    with contextlib.suppress(OSError):
        tmp.rmdir()
    return cert, key

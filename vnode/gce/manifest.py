"""API pod -> a static pod manifest that the VM's standalone kubelet can run alone.

A standalone kubelet has no API client: it leaves a pod with a ConfigMap or Secret
volume or a projected token in ``ContainerCreating`` for ever, fails env from a
ConfigMap with ``CreateContainerConfigError``, and silently ignores
``serviceAccountName`` (shared/reference/kubelet, case f). So everything the pod refers
to is resolved here, on vnode's side, through :class:`~vnode.provider.ClusterReader`:

- **env**: ``configMapKeyRef``/``secretKeyRef`` and ``envFrom`` (with ``prefix``) become
  plain values, with the kubelet's rules (``optional``, invalid names skipped with a
  warning, later entries win) and its error texts for a missing object or key. Resolved
  values have ``$`` doubled so the VM kubelet's ``$(VAR)`` expansion gives them back
  unchanged, as the real kubelet never expands them. ``fieldRef`` resolves to the API
  pod's own name, namespace, uid, labels, annotations, ``spec.nodeName`` (the vnode Node)
  and service account; the host IP is known only on the VM, so it is written as
  :data:`HOST_IP_PLACEHOLDER`, which the boot script replaces with the VM's internal
  IP before the manifest reaches the kubelet (with host networking the pod IP is the
  same; on the CNI bridge the VM kubelet resolves ``status.podIP`` itself from the
  sandbox). ``resourceFieldRef`` resolves from the container's resources, an unset
  limit from ``allocatable`` (the VM's shape) as the kubelet does, and is left to the
  VM kubelet when that is not given.
- **volumes**: ConfigMap, Secret, downward API and projected volumes (ConfigMap,
  Secret, downward API and service-account token sources) are materialised as
  :class:`VolumeFile` entries under ``volumes_dir/<volume>/`` and the volume becomes a
  ``hostPath`` on that directory, mounted read-only as the kubelet mounts them. Volumes
  holding a Secret or a token go under ``secret_volumes_dir`` instead, on the VM's
  tmpfs ``/run``, so that, as with the kubelet's own secret volumes, they never touch
  the disk. Their contents never enter the manifest text: the caller decides how the
  files reach the VM (and must write them again if the VM ever reboots). ``emptyDir``
  stays; a ``hostPath`` is kept only under ``allowed_host_paths``; anything needing
  cluster storage or services (``persistentVolumeClaim``, ``nfs``, ``csi``,
  ``ephemeral``, ...) fails the pod at once, naming the volume.
- **service-account tokens**: a projected ``serviceAccountToken`` source (including the
  ``kube-api-access-*`` volume admission adds) is minted through TokenRequest, bound to
  the pod, with the pod's own audience and lifetime (the kubelet's 3607 s request makes
  a real API server issue its extended one-year token, which matters because nobody
  refreshes it on the VM). With tokens switched off the default volume and its mounts
  are dropped, and a pod asking for a token explicitly fails.
- **image pull secrets** become the kubelet's own ``config.json`` credentials file, since
  the VM kubelet cannot read Secrets; a missing one is a warning, as for the kubelet.
- **what only the API has** is dropped: scheduling fields, ``nodeName``, service-account
  fields, readiness gates, ``priority``. What would silently change the pod's meaning
  (``runtimeClassName``, ``resourceClaims``) fails it.

The static pod keeps the pod's name, namespace, labels and annotations (the kubelet
reports it as ``<name>-<vm>``), and its **uid is the API pod's uid**: the kubelet keeps a
manifest's uid, so its ``/pods``, its pod directories and the container log paths all
carry the API uid, and the annotation ``vnode.dev/pod-uid`` says it again. Host
networking is the default; with the CNI bridge the pod's own choice stands.

Secret **env** values cannot be kept out of the manifest (a container's environment
has no file indirection); :attr:`StaticPod.has_secret_env` says when the manifest
carries some, so the caller can treat it as secret.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import json
import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, cast

from vnode.errors import InvalidPod
from vnode.gce import quantity
from vnode.provider import ClusterReader, Pod
from vnode.settings import GCESettings

HOST_IP_PLACEHOLDER = "__VNODE_HOST_IP__"
"""Written where the VM's internal IP belongs; the boot script substitutes it."""

POD_UID_ANNOTATION = "vnode.dev/pod-uid"
VOLUMES_DIR = "/var/lib/vnode/volumes"
SECRET_VOLUMES_DIR = "/run/vnode/volumes"
KUBELET_ROOT_DIR = "/var/lib/kubelet"
DEFAULT_MODE = 0o644
DEFAULT_TOKEN_SECONDS = 3600
CONFIG_ERROR = "CreateContainerConfigError"
MOUNT_ERROR = "FailedMount"

# Dropped because only the API server and the scheduler give them meaning.
_API_ONLY_FIELDS = (
    "nodeName",
    "nodeSelector",
    "affinity",
    "tolerations",
    "schedulerName",
    "priority",
    "priorityClassName",
    "preemptionPolicy",
    "topologySpreadConstraints",
    "readinessGates",
    "schedulingGates",
    "ephemeralContainers",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "imagePullSecrets",
    "overhead",
)
# Annotations that only weigh on the VM's metadata.
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
_MATERIALISED = ("configMap", "secret", "downwardAPI", "projected")
_KEY_WORD = {"configmap": "config", "secret": "secret"}  # the kubelet's wording
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBSCRIPT = re.compile(r"^(metadata\.(?:labels|annotations))\['(.+)'\]$")


@dataclass(frozen=True)
class VolumeFile:
    """A file the boot script writes on the VM before the kubelet starts."""

    path: str
    """Absolute path on the VM."""
    content: bytes
    mode: int
    """Permission bits (``0o644`` unless the volume says otherwise)."""
    gid: int | None = None
    """Group owner (the pod's ``fsGroup``), None for root."""
    sensitive: bool = False
    """From a Secret or a token: keep it out of logs and of readable metadata."""


@dataclass(frozen=True)
class ManifestOptions:
    host_network: bool = True
    """Run the pod in the VM's network namespace (False when the VM has the CNI bridge;
    the pod's own ``hostNetwork`` then stands)."""
    volumes_dir: str = VOLUMES_DIR
    """Where materialised volumes go on the VM, one directory per volume."""
    secret_volumes_dir: str = SECRET_VOLUMES_DIR
    """Where volumes holding Secrets or tokens go instead (a tmpfs on COS)."""
    kubelet_root_dir: str = KUBELET_ROOT_DIR
    """The VM kubelet's ``--root-dir``; its ``config.json`` holds image pull credentials."""
    allowed_host_paths: tuple[str, ...] = ()
    """``hostPath`` paths (and what is below them) a pod may mount."""
    service_account_tokens: bool = True
    """Mint tokens for ``serviceAccountToken`` sources (else see the module docstring)."""
    allocatable: Mapping[str, str] = field(default_factory=dict)
    """The VM's allocatable resources (``cpu``, ``memory``, ...): the value of a
    ``resourceFieldRef`` on a limit the container does not set."""
    kubernetes_service: tuple[str, int] | None = None
    """Host and port of the API server as the VM reaches it; when set, containers get
    ``KUBERNETES_SERVICE_HOST``/``_PORT`` as a kubelet with an API client gives them."""

    @classmethod
    def from_settings(cls, settings: GCESettings, **overrides: Any) -> ManifestOptions:
        """Options from the GCE settings; ``overrides`` set the per-pod ones
        (``allocatable``, ``kubernetes_service``)."""
        base = cls(
            host_network=not settings.cni_bridge,
            allowed_host_paths=settings.allowed_host_paths,
            service_account_tokens=settings.service_account_tokens,
        )
        return dataclasses.replace(base, **overrides)


@dataclass(frozen=True)
class StaticPod:
    manifest: dict[str, Any]
    """The static pod (apiVersion v1, kind Pod) for the kubelet's manifest folder."""
    files: tuple[VolumeFile, ...] = ()
    """Materialised volumes and credentials, written before the kubelet starts."""
    warnings: tuple[str, ...] = ()
    """What the kubelet would have reported as a Warning event (skipped env names, a
    missing pull secret); the caller turns them into Events."""
    has_secret_env: bool = False
    """The manifest holds values taken from Secrets (``secretKeyRef``/``secretRef``)."""

    @property
    def needs_host_ip(self) -> bool:
        """The manifest holds :data:`HOST_IP_PLACEHOLDER` for the boot script to replace."""
        return HOST_IP_PLACEHOLDER in json.dumps(self.manifest)


async def build_static_pod(
    pod: Pod | Mapping[str, Any], cluster: ClusterReader, options: ManifestOptions | None = None
) -> StaticPod:
    """The static pod for ``pod``. Raises ``InvalidPod`` for what cannot run on a VM."""
    return await _Builder(cast(Pod, pod), cluster, options or ManifestOptions()).build()


class _Builder:
    def __init__(self, pod: Pod, cluster: ClusterReader, options: ManifestOptions) -> None:
        self.pod = pod
        self.cluster = cluster
        self.options = options
        self.meta: Mapping[str, Any] = cast(Mapping[str, Any], pod.get("metadata")) or {}
        self.namespace = str(self.meta.get("namespace") or "default")
        self.spec: dict[str, Any] = copy.deepcopy(dict(pod.get("spec") or {}))
        self.files: list[VolumeFile] = []
        self.warnings: list[str] = []
        self.secret_env = False
        self.config_maps: dict[str, dict[str, Any] | None] = {}
        self.secrets: dict[str, dict[str, Any] | None] = {}
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        self.fs_group = int(fs_group) if fs_group is not None else None
        # Whether the pod shares the VM's network namespace once converted.
        self.host_network = options.host_network or bool(self.spec.get("hostNetwork"))

    async def build(self) -> StaticPod:
        spec = self.spec
        for name in ("runtimeClassName", "resourceClaims"):
            if spec.get(name):
                raise InvalidPod(
                    f"spec.{name} cannot be honoured on a vnode VM: its standalone kubelet "
                    "has no API server to resolve it"
                )
        dropped, read_only = await self._volumes()
        for kind in ("initContainers", "containers"):
            for container in spec.get(kind) or ():
                await self._container(container, dropped, read_only)
        await self._pull_secrets()
        for name in _API_ONLY_FIELDS:
            spec.pop(name, None)
        if self.options.host_network:
            spec["hostNetwork"] = True
        if spec.get("hostNetwork"):
            self._host_ports()
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": self._metadata(),
            "spec": spec,
        }
        return StaticPod(
            manifest=manifest,
            files=tuple(self.files),
            warnings=tuple(self.warnings),
            has_secret_env=self.secret_env,
        )

    # -- metadata ----------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        uid = str(self.meta.get("uid") or "")
        annotations = {
            k: v
            for k, v in (self.meta.get("annotations") or {}).items()
            if k not in _DROPPED_ANNOTATIONS
        }
        annotations[POD_UID_ANNOTATION] = uid
        out: dict[str, Any] = {
            "name": self.meta.get("name", ""),
            "namespace": self.namespace,
            "uid": uid,
            "annotations": annotations,
        }
        if self.meta.get("labels"):
            out["labels"] = dict(self.meta["labels"])
        return out

    def _host_ports(self) -> None:
        for kind in ("initContainers", "containers"):
            for container in self.spec.get(kind) or ():
                for port in container.get("ports") or ():
                    host_port = port.get("hostPort")
                    if host_port not in (None, 0, port.get("containerPort")):
                        raise InvalidPod(
                            f'container "{container.get("name")}" maps hostPort {host_port} to '
                            f"containerPort {port.get('containerPort')}, which host networking "
                            "cannot do (the VM runs pods on its own network unless the CNI "
                            "bridge is configured)"
                        )
                    port["hostPort"] = port.get("containerPort")

    # -- containers --------------------------------------------------------------------

    async def _container(
        self, container: dict[str, Any], dropped: set[str], read_only: set[str]
    ) -> None:
        env = await self._env(container)
        container.pop("envFrom", None)
        if env:
            container["env"] = env
        else:
            container.pop("env", None)
        mounts = []
        for mount in container.get("volumeMounts") or ():
            if mount.get("name") in dropped:
                continue
            mounts.append({**mount, "readOnly": True} if mount.get("name") in read_only else mount)
        if "volumeMounts" in container:
            container["volumeMounts"] = mounts

    async def _env(self, container: Mapping[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        service = self.options.kubernetes_service
        if service is not None:
            out += [
                {"name": "KUBERNETES_SERVICE_HOST", "value": _escape(service[0])},
                {"name": "KUBERNETES_SERVICE_PORT", "value": str(service[1])},
            ]
        for source in container.get("envFrom") or ():
            out += await self._env_from(source)
        for var in container.get("env") or ():
            source = var.get("valueFrom")
            if source is None:
                out.append(var)
                continue
            resolved = await self._env_value(container, var["name"], source)
            if isinstance(resolved, dict):
                out.append({"name": var["name"], "valueFrom": resolved})
            elif resolved is not None:
                out.append({"name": var["name"], "value": resolved})
        return out

    async def _env_from(self, source: Mapping[str, Any]) -> list[dict[str, Any]]:
        prefix = str(source.get("prefix") or "")
        if "configMapRef" in source:
            ref, kind = source["configMapRef"], "configMap"
            obj = await self._config_map(ref.get("name", ""))
            data = dict((obj or {}).get("data") or {})
        elif "secretRef" in source:
            ref, kind = source["secretRef"], "secret"
            obj = await self._secret(ref.get("name", ""))
            data = {k: v.decode("utf-8", "replace") for k, v in _secret_data(obj).items()}
            self.secret_env = self.secret_env or bool(data)
        else:
            raise InvalidPod(f"unsupported envFrom source {sorted(source)}")
        name = ref.get("name", "")
        if obj is None:
            if ref.get("optional"):
                return []
            raise InvalidPod(f'{kind.lower()} "{name}" not found', reason=CONFIG_ERROR)
        out, invalid = [], []
        for key in sorted(data):
            if not _ENV_NAME.match(prefix + key):
                invalid.append(prefix + key)
                continue
            out.append({"name": prefix + key, "value": _escape(data[key])})
        if invalid:
            self.warnings.append(
                f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {kind} "
                f"{self.namespace}/{name} were skipped since they are considered invalid "
                "environment variable names."
            )
        return out

    async def _env_value(
        self, container: Mapping[str, Any], var: str, source: Mapping[str, Any]
    ) -> str | dict[str, Any] | None:
        """The value, a ``valueFrom`` left to the VM kubelet, or None to leave it out."""
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            obj = await self._config_map(ref.get("name", ""))
            data = None if obj is None else dict(obj.get("data") or {})
            return self._key(data, ref, "ConfigMap", "configmap")
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = await self._secret(ref.get("name", ""))
            decoded = None
            if secret is not None:
                decoded = {k: v.decode("utf-8", "replace") for k, v in _secret_data(secret).items()}
            value = self._key(decoded, ref, "Secret", "secret")
            self.secret_env = self.secret_env or value is not None
            return value
        if "fieldRef" in source:
            path = str(source["fieldRef"].get("fieldPath", ""))
            if path in ("status.podIP", "status.podIPs") and not self.host_network:
                # On the CNI bridge the VM kubelet knows the pod IP from the sandbox.
                return dict(source)
            return _escape(self._field(path, in_volume=False))
        if "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            value = self._resource(ref, str(ref.get("containerName") or container.get("name")))
            return dict(source) if value is None else value
        raise InvalidPod(f"env {var}: unsupported valueFrom {sorted(source)}")

    def _key(
        self, data: dict[str, str] | None, ref: Mapping[str, Any], kind: str, api_kind: str
    ) -> str | None:
        name, key = ref.get("name", ""), ref.get("key", "")
        optional = bool(ref.get("optional"))
        if data is None:
            if optional:
                return None
            raise InvalidPod(f'{api_kind} "{name}" not found', reason=CONFIG_ERROR)
        if key not in data:
            if optional:
                return None
            raise InvalidPod(
                f"couldn't find key {key} in {kind} {self.namespace}/{name}", reason=CONFIG_ERROR
            )
        return _escape(data[key])

    # -- the downward API --------------------------------------------------------------

    def _field(self, path: str, *, in_volume: bool) -> str:
        meta = self.meta
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        simple = {
            "metadata.name": str(meta.get("name", "")),
            "metadata.namespace": self.namespace,
            "metadata.uid": str(meta.get("uid", "")),
        }
        if path in simple:
            return simple[path]
        if m := _SUBSCRIPT.match(path):
            source = labels if m[1] == "metadata.labels" else annotations
            return str(source.get(m[2], ""))
        if in_volume:
            if path == "metadata.labels":
                return _format_map(labels)
            if path == "metadata.annotations":
                return _format_map(annotations)
        else:
            spec = self.pod.get("spec") or {}
            if path == "spec.nodeName":
                return str(spec.get("nodeName", ""))
            if path == "spec.serviceAccountName":
                return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "")
            if path in ("status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"):
                return HOST_IP_PLACEHOLDER
        where = "a downwardAPI volume" if in_volume else "env"
        raise InvalidPod(f"fieldPath {path!r} is not supported in {where}")

    def _resource(self, ref: Mapping[str, Any], container_name: str) -> str | None:
        resource = str(ref.get("resource", ""))
        kind, _, name = resource.partition(".")
        if kind not in ("limits", "requests") or not name:
            raise InvalidPod(f"unsupported resourceFieldRef resource {resource!r}")
        spec = self.pod.get("spec") or {}
        containers = [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]
        container = next((c for c in containers if c.get("name") == container_name), None)
        if container is None:
            raise InvalidPod(f"resourceFieldRef names no container {container_name!r}")
        amounts = (container.get("resources") or {}).get(kind) or {}
        raw = amounts.get(name)
        if raw is None and kind == "limits":
            # An unset limit reads as the node's allocatable, as in the kubelet.
            raw = self.options.allocatable.get(name)
            if raw is None:
                return None
        try:
            amount = quantity.parse(raw if raw is not None else 0)
            divisor = quantity.parse(ref.get("divisor") or "1")
        except quantity.QuantityError as err:
            raise InvalidPod(f"resourceFieldRef {resource}: {err}") from None
        if not divisor:
            divisor = Fraction(1)
        if name == "cpu":
            return str(math.ceil(Fraction(math.ceil(amount * 1000)) / math.ceil(divisor * 1000)))
        return str(math.ceil(Fraction(math.ceil(amount)) / math.ceil(divisor)))

    # -- volumes -----------------------------------------------------------------------

    async def _volumes(self) -> tuple[set[str], set[str]]:
        """Rewrite ``spec.volumes``; return the dropped and the read-only volume names."""
        kept, dropped, read_only = [], set(), set()
        for volume in self.spec.get("volumes") or ():
            name = str(volume.get("name", ""))
            kinds = [k for k in volume if k != "name"]
            kind = kinds[0] if kinds else ""
            if kind == "emptyDir":
                kept.append(volume)
            elif kind == "hostPath":
                self._check_host_path(name, str((volume["hostPath"] or {}).get("path", "")))
                kept.append(volume)
            elif kind in _MATERIALISED:
                if self._is_unwanted_default_token(name, volume):
                    dropped.add(name)
                    continue
                await self._materialise(name, self._dir(name, volume), kind, volume[kind] or {})
                kept.append(
                    {
                        "name": name,
                        "hostPath": {
                            "path": self._dir(name, volume),
                            "type": "DirectoryOrCreate",
                        },
                    }
                )
                read_only.add(name)
            else:
                raise InvalidPod(
                    f'volume "{name}" is a {kind or "volume without a source"} volume, which '
                    "a vnode VM cannot mount: it runs the pod alone with no access to cluster "
                    "storage (use emptyDir, configMap, secret, downwardAPI or projected volumes)",
                    reason=MOUNT_ERROR,
                )
        if "volumes" in self.spec:
            self.spec["volumes"] = kept
        return dropped, read_only

    def _is_unwanted_default_token(self, name: str, volume: Mapping[str, Any]) -> bool:
        """The token volume admission adds (``kube-api-access-*``), with tokens off."""
        return (
            not self.options.service_account_tokens
            and name.startswith("kube-api-access-")
            and _has_token(volume)
        )

    def _check_host_path(self, volume: str, path: str) -> None:
        normal = posixpath.normpath(path) if path else ""
        for allowed in self.options.allowed_host_paths:
            base = posixpath.normpath(allowed)
            if normal == base or normal.startswith(base.rstrip("/") + "/"):
                return
        allowed_text = ", ".join(self.options.allowed_host_paths) or "none are allowed"
        raise InvalidPod(
            f'volume "{volume}": hostPath {path!r} is not available on a vnode VM '
            f"(allowed host paths: {allowed_text})",
            reason=MOUNT_ERROR,
        )

    def _dir(self, name: str, volume: Mapping[str, Any]) -> str:
        sources = [volume, *((volume.get("projected") or {}).get("sources") or ())]
        secret = any("secret" in s or "serviceAccountToken" in s for s in sources)
        base = self.options.secret_volumes_dir if secret else self.options.volumes_dir
        return posixpath.join(base, name)

    async def _materialise(
        self, volume: str, directory: str, kind: str, source: Mapping[str, Any]
    ) -> None:
        default_mode = int(source.get("defaultMode", DEFAULT_MODE))
        if kind == "configMap":
            payload = await self._config_map_payload(volume, source, default_mode)
        elif kind == "secret":
            payload = await self._secret_payload(volume, source, default_mode)
        elif kind == "downwardAPI":
            payload = self._downward_payload(volume, source, default_mode)
        else:
            payload = {}
            for part in source.get("sources") or ():
                payload.update(await self._projection(volume, part, default_mode))
        # The kubelet makes these files group-readable for the pod's fsGroup.
        group_bits = 0o440 if self.fs_group is not None else 0
        for path, (content, mode, sensitive) in sorted(payload.items()):
            self.files.append(
                VolumeFile(
                    path=posixpath.join(directory, path),
                    content=content,
                    mode=mode | group_bits,
                    gid=self.fs_group,
                    sensitive=sensitive,
                )
            )

    async def _projection(
        self, volume: str, part: Mapping[str, Any], default_mode: int
    ) -> dict[str, tuple[bytes, int, bool]]:
        if "configMap" in part:
            return await self._config_map_payload(volume, part["configMap"], default_mode)
        if "secret" in part:
            secret = dict(part["secret"])
            secret.setdefault("secretName", secret.get("name", ""))
            return await self._secret_payload(volume, secret, default_mode)
        if "downwardAPI" in part:
            return self._downward_payload(volume, part["downwardAPI"], default_mode)
        if "serviceAccountToken" in part:
            return await self._token_payload(volume, part["serviceAccountToken"], default_mode)
        raise InvalidPod(
            f'volume "{volume}": projected source {sorted(part)} is not supported on a vnode VM',
            reason=MOUNT_ERROR,
        )

    async def _config_map_payload(
        self, volume: str, source: Mapping[str, Any], default_mode: int
    ) -> dict[str, tuple[bytes, int, bool]]:
        name = str(source.get("name", ""))
        obj = await self._config_map(name)
        if obj is None:
            if source.get("optional"):
                return {}
            raise InvalidPod(
                f'MountVolume.SetUp failed for volume "{volume}" : configmap "{name}" not found',
                reason=MOUNT_ERROR,
            )
        data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
        for key, text in (obj.get("binaryData") or {}).items():
            data[key] = _b64(text, f"configmap {name} key {key}")
        return self._project(volume, data, source, default_mode, "configmap", sensitive=False)

    async def _secret_payload(
        self, volume: str, source: Mapping[str, Any], default_mode: int
    ) -> dict[str, tuple[bytes, int, bool]]:
        name = str(source.get("secretName", ""))
        obj = await self._secret(name)
        if obj is None:
            if source.get("optional"):
                return {}
            raise InvalidPod(
                f'MountVolume.SetUp failed for volume "{volume}" : secret "{name}" not found',
                reason=MOUNT_ERROR,
            )
        return self._project(
            volume, _secret_data(obj), source, default_mode, "secret", sensitive=True
        )

    def _project(
        self,
        volume: str,
        data: Mapping[str, bytes],
        source: Mapping[str, Any],
        default_mode: int,
        what: str,
        *,
        sensitive: bool,
    ) -> dict[str, tuple[bytes, int, bool]]:
        items = source.get("items")
        if not items:
            return {key: (content, default_mode, sensitive) for key, content in data.items()}
        out = {}
        for item in items:
            key = str(item.get("key", ""))
            if key not in data:
                if source.get("optional"):
                    continue
                raise InvalidPod(
                    f'MountVolume.SetUp failed for volume "{volume}" : {what} references '
                    f"non-existent {_KEY_WORD[what]} key: {key}",
                    reason=MOUNT_ERROR,
                )
            path = _relative(volume, str(item.get("path", key)))
            out[path] = (data[key], int(item.get("mode", default_mode)), sensitive)
        return out

    def _downward_payload(
        self, volume: str, source: Mapping[str, Any], default_mode: int
    ) -> dict[str, tuple[bytes, int, bool]]:
        out = {}
        for item in source.get("items") or ():
            path = _relative(volume, str(item.get("path", "")))
            if "fieldRef" in item:
                text = self._field(str(item["fieldRef"].get("fieldPath", "")), in_volume=True)
            elif "resourceFieldRef" in item:
                ref = item["resourceFieldRef"]
                value = self._resource(ref, str(ref.get("containerName", "")))
                if value is None:
                    raise InvalidPod(
                        f'volume "{volume}": {ref.get("resource")} of container '
                        f"{ref.get('containerName')!r} has no limit and the VM's allocatable "
                        "is not known"
                    )
                text = value
            else:
                raise InvalidPod(f'volume "{volume}": downwardAPI item {path!r} has no source')
            out[path] = (text.encode(), int(item.get("mode", default_mode)), False)
        return out

    async def _token_payload(
        self, volume: str, source: Mapping[str, Any], default_mode: int
    ) -> dict[str, tuple[bytes, int, bool]]:
        if not self.options.service_account_tokens:
            raise InvalidPod(
                f'volume "{volume}" asks for a service-account token, and this vnode does not '
                "mint tokens for its VMs",
                reason=MOUNT_ERROR,
            )
        spec = self.pod.get("spec") or {}
        account = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        audience = source.get("audience")
        token = await self.cluster.request_token(
            self.namespace,
            account,
            audiences=[str(audience)] if audience else [],
            expiration_seconds=int(source.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS),
            pod=self.pod,
        )
        path = _relative(volume, str(source.get("path", "")))
        return {path: (token.encode(), default_mode, True)}

    # -- image pull secrets ------------------------------------------------------------

    async def _pull_secrets(self) -> None:
        auths: dict[str, Any] = {}
        for ref in self.spec.get("imagePullSecrets") or ():
            name = str(ref.get("name", ""))
            secret = await self._secret(name)
            data = _secret_data(secret) if secret is not None else {}
            config: Any = None
            try:
                if ".dockerconfigjson" in data:
                    config = json.loads(data[".dockerconfigjson"]).get("auths")
                elif ".dockercfg" in data:
                    config = json.loads(data[".dockercfg"])
            except (ValueError, AttributeError):
                config = None
            if not isinstance(config, dict):
                self.warnings.append(
                    f"Unable to retrieve some image pull secrets ({name}); attempting to pull "
                    "the image may not succeed."
                )
                continue
            for registry, entry in config.items():
                auths.setdefault(registry, entry)
        if auths:
            self.files.append(
                VolumeFile(
                    path=posixpath.join(self.options.kubelet_root_dir, "config.json"),
                    content=json.dumps({"auths": auths}, sort_keys=True).encode(),
                    mode=0o600,
                    sensitive=True,
                )
            )

    # -- cluster reads, once per object --------------------------------------------------

    async def _config_map(self, name: str) -> dict[str, Any] | None:
        if name not in self.config_maps:
            self.config_maps[name] = await self.cluster.get_config_map(self.namespace, name)
        return self.config_maps[name]

    async def _secret(self, name: str) -> dict[str, Any] | None:
        if name not in self.secrets:
            self.secrets[name] = await self.cluster.get_secret(self.namespace, name)
        return self.secrets[name]


# -- helpers ------------------------------------------------------------------------


def _escape(value: str) -> str:
    """Protect a resolved value from the kubelet's ``$(VAR)`` expansion (``$$`` is ``$``)."""
    return value.replace("$", "$$")


def _has_token(volume: Mapping[str, Any]) -> bool:
    sources = (volume.get("projected") or {}).get("sources") or ()
    return any("serviceAccountToken" in s for s in sources)


def _secret_data(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    if secret is None:
        return {}
    name = (secret.get("metadata") or {}).get("name", "")
    return {k: _b64(v, f"secret {name} key {k}") for k, v in (secret.get("data") or {}).items()}


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidPod(f"{what} is not valid base64") from None


def _relative(volume: str, path: str) -> str:
    """A volume item's path, refusing anything that would leave the volume directory."""
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or path.startswith(".."):
        raise InvalidPod(f'volume "{volume}": item path {path!r} must be relative, without ".."')
    return posixpath.normpath(path)


def _format_map(values: Mapping[str, str]) -> str:
    """``key="value"`` lines in key order, as the kubelet writes labels and annotations."""
    return "\n".join(f"{k}={_go_quote(str(values[k]))}" for k in sorted(values))


def _go_quote(text: str) -> str:
    """A double-quoted string with Go's ``%q`` escapes."""
    named = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n"}
    named |= {"\r": "\\r", "\t": "\\t", "\v": "\\v"}
    out = []
    for ch in text:
        if ch in named:
            out.append(named[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'

"""The pod controller: what a kubelet does with the pods bound to its Node.

One watch of ``pods`` with ``fieldSelector=spec.nodeName=<node>`` keeps a local cache of
raw pod dicts (list, then watch from the list's resourceVersion with bookmarks; a 410
re-lists; other failures resume after a capped backoff). Every change queues the pod's
key (``namespace/name``) on a :class:`~vnode.node.queue.KeyedQueue`; N workers take keys
and :meth:`PodController.reconcile` them from the *latest* cached pod, so each step is
decided from current state and is safe to repeat:

- a new pod is handed to ``provider.create_pod``; a pod the provider refuses
  (``InvalidPod``, or ``QuotaExceeded`` when it found no room) ends ``Failed`` with its
  reason and message and a Warning Event and is never tried again; any other failure is
  retried with the key's backoff and reported as a Warning Event;
- a pod with a ``deletionTimestamp`` is deleted in the provider, then its object is
  removed with grace period 0 and a uid precondition;
- a pod past its ``activeDeadlineSeconds`` is stopped and ends ``Failed`` with reason
  ``DeadlineExceeded``, as the kubelet does;
- the provider's status is written to ``pods/status`` as a strategic merge patch, only
  when it differs from what the API server holds, and never moving a pod out of a
  terminal phase.

The same queue carries status refreshes (every ``settings.pods.status_period`` for each
pod, and whenever the provider calls ``ProviderContext.notify``), so calls for one pod
never overlap, as the Provider contract promises, and status polling is bounded by the
number of workers.

Restarts: at start the provider's own list says which pods already run (they are
adopted, not created again); pods bound before vnode started arrive in the initial list.
Provider pods with no API pod (by uid) are deleted, but only once the cache has synced.
Per pod the controller keeps the cached object and a few small fields, and forgets both
when the pod is gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
from collections.abc import Hashable
from typing import Any, Protocol, cast

import aiohttp

from vnode import metrics
from vnode.clock import Clock, parse_time
from vnode.errors import InvalidPod, QuotaExceeded
from vnode.logging_setup import log_context
from vnode.node.cluster import ApiError, path, request, request_json
from vnode.node.queue import KeyedQueue, ShutDown
from vnode.provider import Pod, PodRef, PodStatus, Provider
from vnode.settings import Settings

log = logging.getLogger(__name__)

TERMINAL = ("Succeeded", "Failed")
ORPHAN_PERIOD = 60.0
"""Seconds between sweeps for provider pods that have no API pod."""
WATCH_TIMEOUT = (300, 600)
"""Server-side watch timeout range in seconds (spread like client-go's reflector)."""
WATCH_BACKOFF = (0.8, 30.0)
"""Backoff between failed list/watch attempts: first delay and cap, seconds."""
LIST_PAGE = 500

# Lists in a PodStatus that a strategic merge patch merges by a key (the API's
# patchMergeKey), and whether an element missing from the new status is deleted (IPs
# are the provider's) or left alone (conditions are shared with the scheduler and other
# controllers). Every other list, containerStatuses included, is atomic: the server
# replaces it whole, so a change sends the whole new list.
MERGE_LISTS: dict[str, tuple[str, bool]] = {
    "conditions": ("type", False),
    "podIPs": ("ip", True),
    "hostIPs": ("ip", True),
}


# -- status comparison -------------------------------------------------------------------


def normalise(value: Any) -> Any:
    """Drop what JSON round trips add or remove without meaning: nulls and empty maps."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            n = normalise(v)
            if n is None or n == {}:
                continue
            out[k] = n
        return out
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def _diff(old: Any, new: Any) -> Any:
    """Two-way strategic-merge diff of plain values; ``None`` deletes a map key."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, Any] = {}
        for k, v in new.items():
            if k not in old:
                out[k] = v
            elif old[k] != v:
                out[k] = _diff(old[k], v)
        for k in old:
            if k not in new:
                out[k] = None
        return out
    return new


def status_patch(old: PodStatus, new: PodStatus) -> dict[str, Any]:
    """The strategic merge patch that takes ``old`` to ``new``, for the keys ``new`` has.

    Both must be normalised. Keys of ``old`` that ``new`` does not mention (``qosClass``,
    conditions of other types) are left alone: other writers own them. Returns ``{}``
    when nothing would change.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key in MERGE_LISTS and isinstance(value, list):
            merge_key, delete_missing = MERGE_LISTS[key]
            before = {e.get(merge_key): e for e in old.get(key) or [] if isinstance(e, dict)}
            items: list[dict[str, Any]] = []
            seen = set()
            for element in value:
                name = element.get(merge_key)
                seen.add(name)
                prior = before.get(name)
                if prior is None:
                    items.append(element)
                elif prior != element:
                    items.append({**_diff(prior, element), merge_key: name})
            if delete_missing:
                items.extend(
                    {merge_key: name, "$patch": "delete"} for name in before if name not in seen
                )
            if items:
                patch[key] = items
        elif old.get(key) != value:
            patch[key] = _diff(old.get(key), value) if key in old else value
    return patch


def _fingerprint(value: Any) -> int:
    return hash(json.dumps(value, sort_keys=True, separators=(",", ":")))


def _rv_newer(a: str, b: str) -> bool:
    """Whether resourceVersion ``a`` is newer than ``b`` (opaque: only when both are numbers)."""
    try:
        return int(a) > int(b)
    except ValueError:
        return a != b


def _holds_newer(cached: dict[str, Any] | None, incoming: dict[str, Any]) -> bool:
    """Whether ``cached`` is the same pod as ``incoming`` and already a newer copy of it."""
    if cached is None or cached["metadata"].get("uid") != incoming["metadata"].get("uid"):
        return False
    try:
        held = int(cached["metadata"].get("resourceVersion") or 0)
        offered = int(incoming["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return False  # opaque versions: trust the newest arrival
    return held > offered


def pod_key(pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _spec_fingerprint(pod: dict[str, Any]) -> int:
    """What ``update_pod`` is told about: labels, annotations, the active deadline."""
    meta = pod["metadata"]
    return _fingerprint(
        [
            meta.get("labels") or {},
            meta.get("annotations") or {},
            pod.get("spec", {}).get("activeDeadlineSeconds"),
        ]
    )


def _stub(namespace: str, name: str, uid: str) -> Pod:
    """A pod reduced to its identity, for deleting what the API no longer has."""
    return cast(Pod, {"metadata": {"namespace": namespace, "name": name, "uid": uid}, "spec": {}})


class Recorder(Protocol):
    """:class:`vnode.node.events.EventRecorder`'s call: the provider's, plus a field path."""

    def __call__(
        self, obj: Any, type_: str, reason: str, message: str, *, field_path: str = ""
    ) -> None: ...


# -- per-pod bookkeeping -----------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _PodState:
    """What the controller remembers of one pod beyond the cached object (small on purpose)."""

    uid: str
    created: bool = False  # the provider accepted (or already ran) it
    deleted: bool = False  # the provider confirmed its deletion
    spec_hash: int = 0  # _spec_fingerprint when the provider last heard of it
    status_hash: int = 0  # fingerprint of the last status we patched
    status_rv: str = ""  # resourceVersion our last status patch produced


class PodController:
    """Runs the pods bound to this Node through a provider. See the module docstring."""

    def __init__(
        self,
        api_client: Any,
        provider: Provider,
        settings: Settings,
        recorder: Recorder,
        clock: Clock,
        *,
        orphan_period: float = ORPHAN_PERIOD,
    ) -> None:
        self._api = api_client
        self._provider = provider
        self._settings = settings.pods
        self._node = settings.node.name
        self._record = recorder
        self._clock = clock
        self._orphan_period = orphan_period
        self._queue = KeyedQueue(clock, base=settings.pods.retry_base, cap=settings.pods.retry_max)
        self._cache: dict[str, dict[str, Any]] = {}
        self._states: dict[str, _PodState] = {}
        self._adopted: set[str] = set()  # uids the provider ran before we started
        self._synced = asyncio.Event()
        self._resource_version = ""
        # Counters, for logs, metrics and tests.
        self.status_patches = 0
        self.list_calls = 0
        self.watch_calls = 0
        metrics.current().count_pods_from(lambda: list(self._cache.values()))

    # -- what other parts read ---------------------------------------------------------

    async def wait_synced(self) -> None:
        """Return once the first list of this Node's pods is in the cache."""
        await self._synced.wait()

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def get_pod(self, namespace: str, name: str) -> Pod | None:
        pod = self._cache.get(f"{namespace}/{name}")
        return cast(Pod, pod) if pod is not None else None

    def pods(self) -> list[Pod]:
        return [cast(Pod, p) for p in self._cache.values()]

    def notify(self, pod: Pod | PodRef) -> None:
        """The provider saw a status change: refresh that pod soon (``ProviderContext.notify``)."""
        key = pod.key if isinstance(pod, PodRef) else pod_key(cast(dict[str, Any], pod))
        if key in self._states:
            self._queue.add(key)

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Watch, reconcile and refresh until cancelled."""
        if self._queue.shutting_down:  # run again after a stop: start from a clean queue
            settings = self._settings
            self._queue = KeyedQueue(self._clock, base=settings.retry_base, cap=settings.retry_max)
        await self._adopt()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._watch_loop(), name="pods-watch")
                for i in range(max(1, self._settings.workers)):
                    tasks.create_task(self._worker(), name=f"pods-worker-{i}")
                tasks.create_task(self._status_loop(), name="pods-status")
                tasks.create_task(self._orphan_loop(), name="pods-orphans")
        finally:
            self._queue.shutdown()

    async def _adopt(self) -> None:
        """Learn which pods the provider already runs, so they are not created again."""
        try:
            refs = await self._provider.list_pods()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # Not fatal: create_pod is safe to repeat; we only lose the shortcut.
            log.warning("could not list the provider's pods for adoption: %s", e)
            return
        self._adopted = {ref.uid for ref in refs}
        if refs:
            log.info("provider already runs %d pod(s) for node %s", len(refs), self._node)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self._queue.get()
            except ShutDown:
                return
            with log_context(pod=str(key)):
                try:
                    await self.reconcile(str(key))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reconciling pod %s failed", key)
                    self._queue.add_rate_limited(key)
                finally:
                    self._queue.done(key)

    async def _status_loop(self) -> None:
        """Queue every running pod for a status refresh each period."""
        await self._synced.wait()
        period = self._settings.status_period
        if getattr(self._provider, "pushes_status", False) is True:
            period = max(period * 6, 60.0)  # pushes carry changes; polling only catches misses
        while True:
            await self._clock.sleep(period)
            for key, state in list(self._states.items()):
                pod = self._cache.get(key)
                if pod is None or not state.created or state.deleted:
                    continue
                if (pod.get("status") or {}).get("phase") not in TERMINAL:
                    self._queue.add(key)

    async def _orphan_loop(self) -> None:
        await self._synced.wait()
        while True:
            try:
                await self.delete_orphans()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("sweeping orphan provider pods failed: %s", e)
            await self._clock.sleep(self._orphan_period)

    async def delete_orphans(self) -> int:
        """Delete provider pods whose uid no API pod of this Node has; returns how many.

        Only after the cache synced: before that, every provider pod would look orphaned.
        """
        if not self._synced.is_set():
            return 0
        refs = await self._provider.list_pods()
        wanted = {p["metadata"].get("uid") for p in self._cache.values()}
        wanted.update(s.uid for s in self._states.values() if not s.deleted)
        self._adopted &= wanted  # adoption is only for pods the API still has
        deleted = 0
        for ref in refs:
            if ref.uid in wanted:
                continue
            log.info(
                "deleting provider pod %s (uid %s): no such pod on the API server", ref.key, ref.uid
            )
            try:
                await self._provider.delete_pod(_stub(ref.namespace, ref.name, ref.uid))
                deleted += 1
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("deleting orphan provider pod %s failed: %s", ref.key, e)
        return deleted

    # -- list and watch ----------------------------------------------------------------

    async def _watch_loop(self) -> None:
        delay = WATCH_BACKOFF[0]
        while True:
            try:
                if not self._resource_version:
                    await self._list()
                await self._watch()
                delay = WATCH_BACKOFF[0]  # a watch that ended normally resets the backoff
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.gone:
                    log.info("pod watch expired (%s); listing again", e)
                    self._resource_version = ""
                    continue
                log.warning("pod list/watch failed, retrying in %.1fs: %s", delay, e)
                await self._clock.sleep(delay)
                delay = min(delay * 2, WATCH_BACKOFF[1])
            except Exception as e:
                log.warning("pod list/watch failed, retrying in %.1fs: %r", delay, e)
                await self._clock.sleep(delay)
                delay = min(delay * 2, WATCH_BACKOFF[1])

    async def _list(self) -> None:
        self.list_calls += 1
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query: dict[str, str | int | bool] = {
                "fieldSelector": f"spec.nodeName={self._node}",
                "limit": LIST_PAGE,
            }
            if token:
                query["continue"] = token
            page = await request_json(self._api, "GET", "/api/v1/pods", query=query)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                break
        fresh = {pod_key(p): p for p in items}
        gone = [k for k in self._cache if k not in fresh]
        self._cache = fresh
        self._resource_version = str(meta.get("resourceVersion") or "")
        for key in [*fresh, *gone]:
            self._queue.add(key)
        if not self._synced.is_set():
            log.info("pod cache synced: %d pod(s) bound to node %s", len(fresh), self._node)
            self._synced.set()

    async def _watch(self) -> None:
        self.watch_calls += 1
        timeout = random.randint(*WATCH_TIMEOUT)
        query: dict[str, str | int | bool] = {
            "watch": "true",
            "fieldSelector": f"spec.nodeName={self._node}",
            "resourceVersion": self._resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout,
        }
        response = await request(
            self._api, "GET", "/api/v1/pods", query=query, request_timeout=timeout + 30
        )
        try:
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    line, buffer = buffer[:end], buffer[end + 1 :]
                    if line.strip():
                        self._on_event(json.loads(line))
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ApiError(0, f"pod watch broke: {e}") from e
        finally:
            response.release()

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            raise ApiError(code, f"pod watch: {obj.get('message', obj)}", body=obj)
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            if rv:
                self._resource_version = rv
            return
        key = pod_key(obj)
        if kind in ("ADDED", "MODIFIED"):
            cached = self._cache.get(key)
            if (
                cached is not None
                and cached["metadata"].get("uid") == obj["metadata"].get("uid")
                and (_holds_newer(cached, obj) or cached["metadata"].get("resourceVersion") == rv)
            ):
                # We hold this version or a newer one already: the answer to our own
                # status patch. Nothing to do, and no reason to poll the provider again.
                if rv:
                    self._resource_version = rv
                return
            self._cache[key] = obj
        elif kind == "DELETED":
            cached = self._cache.get(key)
            if cached is None or cached["metadata"].get("uid") == obj["metadata"].get("uid"):
                self._cache.pop(key, None)
        else:
            log.debug("ignoring pod watch event of type %s", kind)
            return
        if rv:
            self._resource_version = rv
        self._queue.add(key)

    # -- reconcile ---------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        """Bring the provider and the API server in line for one pod key."""
        pod = self._cache.get(key)
        state = self._states.get(key)
        if state is not None and (pod is None or pod["metadata"].get("uid") != state.uid):
            # The pod we ran is gone from the API (or replaced by a namesake).
            if not state.deleted:
                namespace, _, name = key.partition("/")
                if not await self._provider_delete(_stub(namespace, name, state.uid), key):
                    return
            del self._states[key]
            state = None
        if pod is None:
            self._queue.discard(key)
            return
        uid = str(pod["metadata"]["uid"])
        if state is None:
            state = _PodState(uid)
            if uid in self._adopted:
                self._adopted.discard(uid)
                state.created = True
                state.spec_hash = _spec_fingerprint(pod)
            self._states[key] = state

        if pod["metadata"].get("deletionTimestamp"):
            await self._delete(key, pod, state)
            return
        phase = (pod.get("status") or {}).get("phase")
        if not state.created:
            if phase in TERMINAL:
                return  # finished (or refused) before we got to it: nothing to start
            if not await self._create(key, pod, state):
                return
        if phase in TERMINAL or state.deleted:
            self._queue.forget(key)
            return  # nothing runs any more; the object waits for its deletion
        if (spec_hash := _spec_fingerprint(pod)) != state.spec_hash:
            try:
                await self._provider.update_pod(cast(Pod, pod))
                state.spec_hash = spec_hash
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("provider update of pod %s failed: %s", key, e)
                self._queue.add_rate_limited(key)
                return
        if await self._deadline_passed(key, pod, state):
            return
        await self._sync_status(key, pod, state)
        self._queue.forget(key)

    async def _deadline_passed(self, key: str, pod: dict[str, Any], state: _PodState) -> bool:
        """Enforce ``activeDeadlineSeconds`` as the kubelet does: stop the pod, fail it."""
        deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        started = (pod.get("status") or {}).get("startTime")
        if deadline is None or not started:
            return False
        left = (parse_time(started) - self._clock.now()).total_seconds() + float(deadline)
        if left > 0:
            self._queue.add_after(key, left)  # look again when it runs out
            return False
        if not await self._provider_delete(cast(Pod, pod), key):
            return True
        message = "Pod was active on the node longer than the specified deadline"
        # Only a pod marked Failed counts as done: a lost patch is retried (deleting in the
        # provider again is harmless), else the pod would show Running with nothing behind it.
        if await self._fail(key, pod, "DeadlineExceeded", message):
            state.deleted = True
            self._record(cast(Pod, pod), "Warning", "DeadlineExceeded", message)
        return True

    async def _create(self, key: str, pod: dict[str, Any], state: _PodState) -> bool:
        try:
            await self._provider.create_pod(cast(Pod, pod))
        except asyncio.CancelledError:
            raise
        except (InvalidPod, QuotaExceeded) as e:
            # The pod can never run here (or no capacity is left for it): fail it now,
            # rather than leave it Pending for ever.
            log.info("provider refused pod %s: %s", key, e.message)
            await self._fail(key, pod, e.pod_reason, e.message)
            self._record(cast(Pod, pod), "Warning", e.pod_reason, e.message)
            return False
        except Exception as e:
            delay = self._queue.add_rate_limited(key, at_least=getattr(e, "retry_after", 0) or 0)
            message = (
                f'Creating the pod on provider "{self._provider.name}" failed '
                f"(retrying in {delay:g}s): {getattr(e, 'message', None) or e}"
            )
            log.warning("pod %s: %s", key, message)
            self._record(cast(Pod, pod), "Warning", "FailedCreate", message)
            return False
        state.created = True
        state.spec_hash = _spec_fingerprint(pod)
        self._record(
            cast(Pod, pod),
            "Normal",
            "Creating",
            f'Creating the pod on provider "{self._provider.name}"',
        )
        return True

    async def _fail(self, key: str, pod: dict[str, Any], reason: str, message: str) -> bool:
        """End a pod that cannot run (on): phase Failed with why, as a kubelet does."""
        body = {
            "metadata": {"uid": pod["metadata"]["uid"]},
            "status": {"phase": "Failed", "reason": reason, "message": message},
        }
        return await self._patch_status(key, pod, body)

    async def _delete(self, key: str, pod: dict[str, Any], state: _PodState) -> None:
        if not state.deleted:
            if (pod.get("status") or {}).get("phase") not in TERMINAL:
                for c in pod.get("spec", {}).get("containers") or []:
                    self._record(
                        cast(Pod, pod),
                        "Normal",
                        "Killing",
                        f"Stopping container {c.get('name')}",
                        field_path=f"spec.containers{{{c.get('name')}}}",
                    )
            if not await self._provider_delete(cast(Pod, pod), key):
                return
            state.deleted = True
        # The provider has let go: remove the object, but only the one we deleted.
        namespace, _, name = key.partition("/")
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": state.uid},
        }
        try:
            await request_json(
                self._api,
                "DELETE",
                path("api", "v1", "namespaces", namespace, "pods", name),
                body=body,
            )
        except ApiError as e:
            if e.not_found or e.conflict:
                return  # already gone, or a new pod of that name: nothing of ours left
            log.warning("removing deleted pod %s failed: %s", key, e)
            self._queue.add_rate_limited(key, at_least=e.retry_after or 0)
            return
        self._queue.forget(key)

    async def _provider_delete(self, pod: Pod, key: str) -> bool:
        try:
            await self._provider.delete_pod(pod)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as e:
            delay = self._queue.add_rate_limited(key, at_least=getattr(e, "retry_after", 0) or 0)
            message = (
                f"error killing pod (retrying in {delay:g}s): {getattr(e, 'message', None) or e}"
            )
            log.warning("pod %s: %s", key, message)
            if pod.get("spec"):
                self._record(pod, "Warning", "FailedKillPod", message)
            return False

    # -- status ------------------------------------------------------------------------

    async def _sync_status(self, key: str, pod: dict[str, Any], state: _PodState) -> None:
        try:
            status = await self._provider.pod_status(cast(Pod, pod))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # The next poll asks again; a status read is not worth a retry storm.
            log.warning("provider status of pod %s failed: %s", key, e)
            return
        if status is None:
            return
        old = normalise(pod.get("status") or {})
        new = normalise(status)
        if old.get("phase") in TERMINAL and new.get("phase") != old.get("phase"):
            return  # a terminal phase is final, whatever the backend says now
        patch = status_patch(old, new)
        if not patch:
            return
        fingerprint = _fingerprint(new)
        rv = str(pod["metadata"].get("resourceVersion") or "")
        if fingerprint == state.status_hash and not _rv_newer(rv, state.status_rv):
            # We sent exactly this, and nobody wrote the pod since: the server keeps it
            # in a form that compares differently. Sending it again would loop.
            return
        body = {"metadata": {"uid": state.uid}, "status": patch}
        if await self._patch_status(key, pod, body):
            state.status_hash = fingerprint
            state.status_rv = str(self._cache.get(key, pod)["metadata"].get("resourceVersion"))
            self._status_events(pod, old, new)

    async def _patch_status(self, key: str, pod: dict[str, Any], body: dict[str, Any]) -> bool:
        namespace, _, name = key.partition("/")
        try:
            updated = await request_json(
                self._api,
                "PATCH",
                path("api", "v1", "namespaces", namespace, "pods", name, "status"),
                body=body,
                content_type="application/strategic-merge-patch+json",
            )
        except ApiError as e:
            if e.not_found:
                return False  # deleted meanwhile; the watch tells us
            log.warning("patching status of pod %s failed: %s", key, e)
            self._queue.add_rate_limited(key, at_least=e.retry_after or 0)
            return False
        self.status_patches += 1
        if not _holds_newer(self._cache.get(key), updated):
            self._cache[key] = updated
        return True

    def _status_events(self, pod: dict[str, Any], old: PodStatus, new: PodStatus) -> None:
        """Events a kubelet user expects when containers start or the pod fails."""
        before = {c.get("name"): c for c in old.get("containerStatuses") or []}
        for c in new.get("containerStatuses") or []:
            name = c.get("name")
            running = "running" in (c.get("state") or {})
            was = before.get(name, {})
            if running and (
                "running" not in (was.get("state") or {})
                or was.get("restartCount") != c.get("restartCount")
            ):
                self._record(
                    cast(Pod, pod),
                    "Normal",
                    "Started",
                    f"Started container {name}",
                    field_path=f"spec.containers{{{name}}}",
                )
        if new.get("phase") == "Failed" and old.get("phase") != "Failed" and new.get("reason"):
            self._record(
                cast(Pod, pod), "Warning", str(new["reason"]), str(new.get("message") or "")
            )

    # -- tests and shutdown ------------------------------------------------------------

    @property
    def queue(self) -> KeyedQueue:
        return self._queue

    def tracked(self) -> dict[Hashable, str]:
        """Pod keys with controller state, mapped to their uid (for tests and debugging)."""
        return {k: s.uid for k, s in self._states.items()}

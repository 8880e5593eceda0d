"""A Job controller (batch/v1) that behaves like kube-controller-manager's, v1.33.

For each Job it keeps ``min(parallelism, completions - succeeded)`` pods running from
the template (owned by the Job, ``generateName: <job>-``, the tracking finalizer
``batch.kubernetes.io/job-tracking``), counts finished pods exactly once by removing
that finalizer, and ends the Job the way 1.33 does: ``SuccessCriteriaMet`` then
``Complete`` once no pod is left running, or ``FailureTarget`` then ``Failed`` with
``BackoffLimitExceeded`` / ``DeadlineExceeded``. Failed pods are replaced after the
real exponential backoff (10 s doubling). ``completionMode: Indexed`` runs each index
once (index annotation and label, ``JOB_COMPLETION_INDEX``, hostname,
``completedIndexes``). A ``podFailurePolicy`` decides per failed pod (first matching
rule: FailJob, Ignore, Count) with the real messages. Events are core/v1 from
``job-controller``.

It also does the garbage collection a deleted Job needs: its pods are deleted with it
(propagation Background), or after it while it waits (``foregroundDeletion``
finalizer), or are released from it (``orphan`` finalizer), and finished Jobs with
``ttlSecondsAfterFinished`` are removed when it runs out.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from typing import Any

from vnode.clock import Clock, parse_time, rfc3339
from vnode.sandbox.kubeapi import fit, resources
from vnode.sandbox.kubeapi.objcache import ObjectCache
from vnode.sandbox.kubeapi.recorder import LegacyRecorder
from vnode.sandbox.kubeapi.status import StatusError
from vnode.sandbox.kubeapi.wakeup import Wakeup

log = logging.getLogger(__name__)

JOBS = resources.by_kind("batch", "Job")
PODS = resources.by_kind("", "Pod")

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
BACKOFF_BASE = 10.0
BACKOFF_MAX = 600.0
RESYNC = 30.0
MANAGER = "kube-controller-manager"

Key = tuple[str, str]


def _owner_uid(obj: dict[str, Any]) -> str | None:
    """The uid of the Job that controls ``obj``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c  # type: ignore[no-any-return]
    return None


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def parse_indexes(text: str | None) -> set[int]:
    """``completedIndexes`` ("0-2,5") as a set."""
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            out.update(range(int(first), int(last or first) + 1))
        except ValueError:
            continue
    return out


def format_indexes(indexes: set[int]) -> str:
    """A set of indexes as ``completedIndexes`` writes it: sorted, runs as ``a-b``."""
    runs: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(runs)


def _index(pod: dict[str, Any]) -> int | None:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_KEY)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _indexed(job: dict[str, Any]) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def _replace_only_failed(job: dict[str, Any]) -> bool:
    spec = job.get("spec") or {}
    policy = spec.get("podReplacementPolicy")
    if policy is None:
        policy = "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    return bool(policy == "Failed")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a pod failure policy says of one failed pod."""

    count: bool = True  # counts toward backoffLimit
    fail_job: str = ""  # the FailureTarget message when a FailJob rule matched


def _exit_code_match(rule: dict[str, Any], pod: dict[str, Any]) -> tuple[str, int] | None:
    req = rule.get("onExitCodes") or {}
    values = set(req.get("values") or [])
    status = pod.get("status") or {}
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if req.get("containerName") and c.get("name") != req["containerName"]:
            continue
        code = ((c.get("state") or {}).get("terminated") or {}).get("exitCode")
        if not isinstance(code, int) or code == 0:
            continue  # running or successful containers never match
        if (req.get("operator") == "In" and code in values) or (
            req.get("operator") == "NotIn" and code not in values
        ):
            return c.get("name", ""), code
    return None


def _condition_match(rule: dict[str, Any], pod: dict[str, Any]) -> str | None:
    have = {
        (c.get("type"), c.get("status")) for c in (pod.get("status") or {}).get("conditions") or []
    }
    for pattern in rule.get("onPodConditions") or []:
        if (pattern.get("type"), pattern.get("status") or "True") in have:
            return str(pattern.get("type"))
    return None


def match_pod_failure_policy(policy: dict[str, Any] | None, pod: dict[str, Any]) -> Verdict:
    """The first rule of ``policy`` that matches the failed ``pod`` decides (as the Job
    controller's matchPodFailurePolicy); no policy or no match counts the failure."""
    if not policy:
        return Verdict()
    ref = f"{pod['metadata'].get('namespace', '')}/{pod['metadata'].get('name', '')}"
    for i, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        if action not in ("FailJob", "Ignore", "Count", "FailIndex"):
            continue  # unknown actions are skipped
        message = ""
        if rule.get("onExitCodes"):
            if rule["onExitCodes"].get("operator") not in ("In", "NotIn"):
                continue
            hit = _exit_code_match(rule, pod)
            if hit is None:
                continue
            message = (
                f"Container {hit[0]} for pod {ref} failed with exit code {hit[1]} "
                f"matching FailJob rule at index {i}"
            )
        elif rule.get("onPodConditions"):
            cond = _condition_match(rule, pod)
            if cond is None:
                continue
            message = f"Pod {ref} has condition {cond} matching FailJob rule at index {i}"
        else:
            continue
        if action == "Ignore":
            return Verdict(count=False)
        if action == "FailJob":
            return Verdict(fail_job=message)
        return Verdict()  # Count, and FailIndex without per-index backoff limits
    return Verdict()


def finished(job: dict[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` when the Job has ended."""
    for type_ in ("Complete", "Failed"):
        if _condition(job, type_) is not None:
            return type_
    return None


class JobController:
    """The Job controller, and the garbage collection of the pods Jobs own."""

    def __init__(self, store: Any, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._events = LegacyRecorder(store, clock, "job-controller")
        self._wakeup = Wakeup(
            store, clock, lambda r: r.storage_key in {("batch", "jobs"), ("", "pods")}
        )
        self._uids: dict[str, Key] = {}  # job uid -> (namespace, name)
        self._pods = ObjectCache()
        self._due: dict[Key, float] = {}  # when a Job must be looked at again (monotonic)
        self._last_failure: dict[str, float] = {}  # job uid -> monotonic time
        self._fail_job: dict[str, str] = {}  # job uid -> a FailJob rule's message
        self._last_resync = 0.0

    # -- pods ----------------------------------------------------------------------------

    def _owned_pods(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        uid = job["metadata"]["uid"]
        return [p for p in self._pods if _owner_uid(p) == uid]

    def _read_back(self, pod: dict[str, Any]) -> None:
        """Put the stored state of a pod this controller just wrote into the cache."""
        try:
            self._pods.put(
                self._store.get(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
            )
        except StatusError:
            self._pods.drop(pod)

    def _new_pod(self, job: dict[str, Any], index: int | None = None) -> dict[str, Any]:
        meta = job["metadata"]
        template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        tmeta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        pod_meta: dict[str, Any] = {"generateName": f"{meta['name']}-"}
        labels = dict(tmeta.get("labels") or {})
        annotations = dict(tmeta.get("annotations") or {})
        if index is not None:
            # Indexed mode: the index in an annotation and a label, the environment and
            # the hostname, as the real controller stamps it.
            pod_meta["generateName"] = f"{meta['name']}-{index}-"
            annotations[INDEX_KEY] = str(index)
            labels[INDEX_KEY] = str(index)
            spec.setdefault("hostname", f"{meta['name']}-{index}")
            ref = {"fieldRef": {"fieldPath": f"metadata.labels['{INDEX_KEY}']"}}
            for key in ("initContainers", "containers"):
                for c in spec.get(key) or []:
                    env = c.setdefault("env", [])
                    if not any(e.get("name") == INDEX_ENV for e in env):
                        env.append({"name": INDEX_ENV, "valueFrom": ref})
        if labels:
            pod_meta["labels"] = dict(sorted(labels.items()))
        if annotations:
            pod_meta["annotations"] = dict(sorted(annotations.items()))
        pod_meta["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        pod_meta["finalizers"] = [TRACKING_FINALIZER]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": pod_meta,
            "spec": spec,
        }

    def _create_pods(self, job: dict[str, Any], indexes: list[int | None]) -> int:
        created = 0
        for index in indexes:
            try:
                pod = self._store.create(
                    PODS, job["metadata"]["namespace"], self._new_pod(job, index), manager=MANAGER
                )
            except StatusError as e:
                self._events.emit(job, "Warning", "FailedCreate", f"Error creating: {e.message}")
                break
            created += 1
            self._pods.put(pod)
            self._events.emit(
                job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}"
            )
        return created

    def _delete_pods(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            try:
                self._store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
            except StatusError:
                continue
            self._read_back(pod)
            if job:
                self._events.emit(
                    job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}"
                )

    def _drop_finalizer(self, pod: dict[str, Any], finalizer: str = TRACKING_FINALIZER) -> None:
        self._remove_finalizer(PODS, pod, finalizer)
        self._read_back(pod)

    def _remove_finalizer(
        self, res: resources.Resource, obj: dict[str, Any], finalizer: str
    ) -> None:
        """Take ``finalizer`` off the stored object (gone already is fine)."""

        def drop(stored: dict[str, Any]) -> None:
            rest = [f for f in stored["metadata"].get("finalizers") or [] if f != finalizer]
            if rest:
                stored["metadata"]["finalizers"] = rest
            else:
                stored["metadata"].pop("finalizers", None)

        with contextlib.suppress(StatusError):
            self._store.mutate(
                res, obj["metadata"]["namespace"], obj["metadata"]["name"], drop, manager=MANAGER
            )

    @staticmethod
    def _counts_as_failed(job: dict[str, Any], pod: dict[str, Any]) -> bool:
        """A pod being deleted counts as failed at once, unless the Job waits for it to
        end (a pod failure policy, or replacement only of Failed pods). One that never
        reached a node has no kubelet to end it (the pod GC would mark it Failed), and
        one whose kubelet confirmed the deletion (grace 0) has ended."""
        meta = pod["metadata"]
        if not meta.get("deletionTimestamp"):
            return False
        if (pod.get("status") or {}).get("phase") == "Succeeded":
            return False
        spec = job.get("spec") or {}
        waits = spec.get("podFailurePolicy") or _replace_only_failed(job)
        return (
            not waits
            or not (pod.get("spec") or {}).get("nodeName")
            or meta.get("deletionGracePeriodSeconds") == 0
        )

    # -- one Job -------------------------------------------------------------------------

    def _sync(self, key: Key) -> None:
        try:
            job = self._store.get(JOBS, *key)
        except StatusError:
            self._due.pop(key, None)
            return
        uid = job["metadata"]["uid"]
        self._uids[uid] = key
        pods = self._owned_pods(job)
        if job["metadata"].get("deletionTimestamp"):
            self._sync_deleting(job, pods)
            return
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        now_wall = self._clock.now()
        now = rfc3339(now_wall)
        mono = self._clock.monotonic()

        # Count every finished pod once: the tracking finalizer is the ledger.
        for pod in pods:
            if TRACKING_FINALIZER not in (pod["metadata"].get("finalizers") or []):
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Succeeded" and _indexed(job):
                # Indexed: success is per index, counted once however often it succeeds.
                done = parse_indexes(status.get("completedIndexes"))
                index = _index(pod)
                completions = int((job.get("spec") or {}).get("completions") or 0)
                if index is not None and 0 <= index < completions:
                    done.add(index)
                status["completedIndexes"] = format_indexes(done)
                status["succeeded"] = len(done)
            elif phase == "Succeeded":
                status["succeeded"] = int(status.get("succeeded") or 0) + 1
            elif phase == "Failed" or self._counts_as_failed(job, pod):
                verdict = match_pod_failure_policy(spec.get("podFailurePolicy"), pod)
                if verdict.count:
                    status["failed"] = int(status.get("failed") or 0) + 1
                    self._last_failure[uid] = mono
                if verdict.fail_job and not self._fail_job.get(uid):
                    self._fail_job[uid] = verdict.fail_job
            else:
                continue
            self._drop_finalizer(pod)
        active = [
            p for p in pods if not fit.is_terminal(p) and not p["metadata"].get("deletionTimestamp")
        ]
        terminating = [
            p for p in pods if not fit.is_terminal(p) and p["metadata"].get("deletionTimestamp")
        ]
        suspended = bool(spec.get("suspend"))
        if finished(job) is None:
            if not suspended and not status.get("startTime"):
                status["startTime"] = now
            self._progress(job, status, active, now=now, mono=mono)
            pods = self._owned_pods(job)
            active = [
                p
                for p in pods
                if not fit.is_terminal(p) and not p["metadata"].get("deletionTimestamp")
            ]
            terminating = [
                p for p in pods if not fit.is_terminal(p) and p["metadata"].get("deletionTimestamp")
            ]
        self._write_status(job, status, status.get("conditions") or [], active, terminating)
        self._schedule_ttl(job, key, mono)

    def _progress(
        self,
        job: dict[str, Any],
        status: dict[str, Any],
        active: list[dict[str, Any]],
        *,
        now: str,
        mono: float,
    ) -> None:
        """Decide the Job's fate, or move its pods toward the wanted count."""
        conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
        succeeded = int(status.get("succeeded") or 0)
        failed = int(status.get("failed") or 0)
        spec = job.get("spec") or {}
        key = (job["metadata"]["namespace"], job["metadata"]["name"])
        completions = spec.get("completions")
        parallelism = int(spec["parallelism"]) if spec.get("parallelism") is not None else 1
        backoff_limit = int(spec["backoffLimit"]) if spec.get("backoffLimit") is not None else 6
        deadline = spec.get("activeDeadlineSeconds")

        def has(type_: str) -> bool:
            return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)

        def add(type_: str, reason: str, message: str) -> None:
            conditions.append(
                {
                    "type": type_,
                    "status": "True",
                    "lastProbeTime": now,
                    "lastTransitionTime": now,
                    "reason": reason,
                    "message": message,
                }
            )

        if not has("FailureTarget") and not has("SuccessCriteriaMet"):
            started = status.get("startTime")
            fail_job = self._fail_job.pop(job["metadata"]["uid"], None)
            if fail_job:
                add("FailureTarget", "PodFailurePolicy", fail_job)
                self._events.emit(job, "Warning", "PodFailurePolicy", fail_job)
            elif failed > backoff_limit:
                add(
                    "FailureTarget",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
                self._events.emit(
                    job,
                    "Warning",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
            elif (
                isinstance(deadline, int)
                and started
                and not spec.get("suspend")
                and ((self._clock.now() - parse_time(started)).total_seconds() >= deadline)
            ):
                add(
                    "FailureTarget",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
                self._events.emit(
                    job,
                    "Warning",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
            elif (completions is not None and succeeded >= int(completions)) or (
                completions is None and succeeded > 0 and not active
            ):
                add(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
            elif isinstance(deadline, int) and started and not spec.get("suspend"):
                left = deadline - (self._clock.now() - parse_time(started)).total_seconds()
                self._due[key] = min(self._due.get(key, mono + left), mono + max(0.0, left))

        ending = next(
            (
                c
                for c in conditions
                if c.get("type") in ("FailureTarget", "SuccessCriteriaMet")
                and c.get("status") == "True"
            ),
            None,
        )
        if ending is not None:
            # The Job is decided: stop what still runs, and end it once nothing does.
            self._delete_pods(job, active)
            if not self._owned_running(job):
                final = "Failed" if ending["type"] == "FailureTarget" else "Complete"
                add(final, ending["reason"], ending["message"])
                if final == "Complete":
                    status["completionTime"] = now
                    self._events.emit(job, "Normal", "Completed", "Job completed")
            return

        self._sync_suspend(job, conditions, active, now)
        if spec.get("suspend"):
            return
        if completions is None:
            want = 0 if succeeded > 0 else parallelism
        else:
            want = max(0, min(parallelism, int(completions) - succeeded))
        if _replace_only_failed(job):
            # podReplacementPolicy Failed: a terminating pod still holds its slot.
            want = max(
                0,
                want
                - sum(
                    1
                    for p in self._owned_pods(job)
                    if p["metadata"].get("deletionTimestamp") and not fit.is_terminal(p)
                ),
            )
        total = int(completions or 0)
        done = parse_indexes(status.get("completedIndexes"))
        if _indexed(job):
            # Pods of finished or duplicate indexes go; missing indexes come, lowest first.
            seen: set[int] = set()
            extra = []
            for pod in sorted(active, key=lambda p: p["metadata"].get("creationTimestamp", "")):
                index = _index(pod)
                if index is None or index in done or index in seen or index >= total:
                    extra.append(pod)
                else:
                    seen.add(index)
            self._delete_pods(job, extra)
            active = [p for p in active if p not in extra]
        diff = want - len(active)
        if diff > 0:
            wait = self._backoff_left(job, failed, mono)
            if wait > 0:
                self._due[key] = min(self._due.get(key, mono + wait), mono + wait)
                return
            indexes: list[int | None] = [None] * diff
            if _indexed(job):
                running = {_index(p) for p in active}
                free = [i for i in range(total) if i not in done and i not in running]
                indexes = list(free[:diff])
            self._create_pods(job, indexes)
        elif diff < 0:
            newest_first = sorted(
                active, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True
            )
            self._delete_pods(job, newest_first[:-diff])

    def _sync_suspend(
        self,
        job: dict[str, Any],
        conditions: list[dict[str, Any]],
        active: list[dict[str, Any]],
        now: str,
    ) -> None:
        suspended = bool((job.get("spec") or {}).get("suspend"))
        current = next((c for c in conditions if c.get("type") == "Suspended"), None)
        if suspended:
            self._delete_pods(job, active)
            if current is None or current.get("status") != "True":
                cond = {
                    "type": "Suspended",
                    "status": "True",
                    "lastProbeTime": now,
                    "lastTransitionTime": now,
                    "reason": "JobSuspended",
                    "message": "Job suspended",
                }
                if current is None:
                    conditions.append(cond)
                else:
                    current.update(cond)
                self._events.emit(job, "Normal", "Suspended", "Job suspended")
        elif current is not None and current.get("status") == "True":
            current.update(
                {
                    "status": "False",
                    "lastProbeTime": now,
                    "lastTransitionTime": now,
                    "reason": "JobResumed",
                    "message": "Job resumed",
                }
            )
            self._events.emit(job, "Normal", "Resumed", "Job resumed")

    def _owned_running(self, job: dict[str, Any]) -> bool:
        return any(not fit.is_terminal(p) for p in self._owned_pods(job))

    def _backoff_left(self, job: dict[str, Any], failed: int, mono: float) -> float:
        last = self._last_failure.get(job["metadata"]["uid"])
        if not failed or last is None:
            return 0.0
        delay = min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** (failed - 1))
        return float(max(0.0, last + delay - mono))

    def _write_status(
        self,
        job: dict[str, Any],
        status: dict[str, Any],
        conditions: list[dict[str, Any]],
        active: list[dict[str, Any]],
        terminating: list[dict[str, Any]],
    ) -> None:
        # Field order and omissions of the real JobStatus.
        out: dict[str, Any] = {}
        if conditions:
            out["conditions"] = conditions
        for k in ("startTime", "completionTime"):
            if status.get(k):
                out[k] = status[k]
        counts = {
            "active": len(active),
            "succeeded": status.get("succeeded") or 0,
            "failed": status.get("failed") or 0,
        }
        for k, v in counts.items():
            if v:
                out[k] = v
        out["terminating"] = len(terminating)
        if status.get("completedIndexes"):
            out["completedIndexes"] = status["completedIndexes"]
        out["uncountedTerminatedPods"] = {}
        out["ready"] = sum(1 for p in active if _is_ready(p))
        if out == (job.get("status") or {}):
            return

        def apply(obj: dict[str, Any]) -> None:
            obj["status"] = out

        try:
            self._store.mutate(
                JOBS,
                job["metadata"]["namespace"],
                job["metadata"]["name"],
                apply,
                subresource="status",
                manager=MANAGER,
            )
        except StatusError as e:
            log.debug("job status write failed: %s", e.message)

    def _schedule_ttl(self, job: dict[str, Any], key: Key, mono: float) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if not isinstance(ttl, int):
            return
        try:
            job = self._store.get(JOBS, *key)
        except StatusError:
            return
        kind = finished(job)
        if kind is None:
            return
        cond = _condition(job, kind) or {}
        at = cond.get("lastTransitionTime") or job["status"].get("completionTime")
        left = ttl - (self._clock.now() - parse_time(at)).total_seconds() if at else ttl
        if left > 0:
            self._due[key] = min(self._due.get(key, mono + left), mono + left)
            return
        self._due.pop(key, None)
        # The TTL controller deletes with propagation Foreground: the Job waits, with the
        # foregroundDeletion finalizer, until its pods are gone.
        if FOREGROUND_FINALIZER not in (job["metadata"].get("finalizers") or []):

            def foreground(obj: dict[str, Any]) -> None:
                obj["metadata"]["finalizers"] = [
                    *(obj["metadata"].get("finalizers") or []),
                    FOREGROUND_FINALIZER,
                ]

            with contextlib.suppress(StatusError):
                self._store.mutate(JOBS, *key, foreground, manager=MANAGER)
        with contextlib.suppress(StatusError):
            self._store.delete(JOBS, *key)

    # -- garbage collection ----------------------------------------------------------------

    def _sync_deleting(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        finalizers = job["metadata"].get("finalizers") or []
        uid = job["metadata"]["uid"]
        for pod in pods:
            if TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or []):
                self._drop_finalizer(pod)
        if ORPHAN_FINALIZER in finalizers:
            for pod in pods:
                self._release(pod, uid)
            self._remove_finalizer(JOBS, job, ORPHAN_FINALIZER)
        elif FOREGROUND_FINALIZER in finalizers:
            remaining = self._owned_pods(job)
            self._delete_pods(
                {}, [p for p in remaining if not p["metadata"].get("deletionTimestamp")]
            )
            if not self._owned_pods(job):
                self._remove_finalizer(JOBS, job, FOREGROUND_FINALIZER)

    def _release(self, pod: dict[str, Any], uid: str) -> None:
        def release(obj: dict[str, Any]) -> None:
            refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                obj["metadata"]["ownerReferences"] = refs
            else:
                obj["metadata"].pop("ownerReferences", None)

        with contextlib.suppress(StatusError):
            self._store.mutate(
                PODS,
                pod["metadata"]["namespace"],
                pod["metadata"]["name"],
                release,
                manager="kube-controller-manager",
            )
        self._read_back(pod)

    def _collect(self, uid: str, namespace: str) -> None:
        """The Job ``uid`` is gone: delete what it owned (propagation Background)."""
        self._uids.pop(uid, None)
        self._last_failure.pop(uid, None)
        for pod in self._pods:
            if _owner_uid(pod) != uid or pod["metadata"].get("namespace") != namespace:
                continue
            if TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or []):
                self._drop_finalizer(pod)
            self._delete_pods({}, [pod])

    def _collect_strays(self) -> None:
        """Pods whose controlling Job no longer exists (a deletion missed while down)."""
        jobs, _ = self._store.list(JOBS)
        live = {j["metadata"]["uid"] for j in jobs}
        for pod in self._pods:
            uid = _owner_uid(pod)
            if uid is not None and uid not in live and not pod["metadata"].get("deletionTimestamp"):
                self._collect(uid, pod["metadata"]["namespace"])

    # -- the loop ----------------------------------------------------------------------

    def _resync(self) -> set[Key]:
        self._wakeup.drain()  # the listings below supersede them
        self._pods.reset(self._store.list(PODS)[0])
        jobs, _ = self._store.list(JOBS)
        self._uids = {
            j["metadata"]["uid"]: (j["metadata"]["namespace"], j["metadata"]["name"]) for j in jobs
        }
        self._collect_strays()
        self._last_resync = self._clock.monotonic()
        return set(self._uids.values())

    def _dirty(self) -> set[Key]:
        keys: set[Key] = set()
        for ch in self._wakeup.drain():
            meta = ch.new.get("metadata") or {}
            if ch.res.storage_key == ("batch", "jobs"):
                if ch.type == "DELETED":
                    self._due.pop((meta.get("namespace", ""), meta.get("name", "")), None)
                    self._collect(meta.get("uid", ""), meta.get("namespace", ""))
                else:
                    keys.add((meta.get("namespace", ""), meta.get("name", "")))
                continue
            self._pods.apply(ch)
            uid = _owner_uid(ch.new)
            if uid is not None and uid in self._uids:
                keys.add(self._uids[uid])
        return keys

    async def run(self) -> None:
        self._wakeup.start()
        try:
            await self._serve()
        finally:
            self._wakeup.stop()

    async def _serve(self) -> None:
        keys = self._resync()
        while True:
            try:
                now = self._clock.monotonic()
                if now - self._last_resync >= RESYNC:
                    keys |= self._resync()
                keys |= self._dirty()
                keys |= {k for k, at in self._due.items() if at <= now}
                for key in sorted(keys):
                    self._due.pop(key, None)
                    try:
                        self._sync(key)
                    except Exception:
                        # One broken Job must not stop the others; the resync retries it.
                        log.exception("syncing job %s/%s failed", *key)
            except Exception:
                log.exception("job controller pass failed")
            keys = set()
            now = self._clock.monotonic()
            wait = self._last_resync + RESYNC - now
            if self._due:
                wait = min(wait, min(self._due.values()) - now)
            await self._wakeup.wait(max(wait, 0.0))


async def run(api: Any) -> None:
    """Run the Job controller of ``api`` (a KubeAPI) until cancelled."""
    await JobController(api.store, api.clock).run()

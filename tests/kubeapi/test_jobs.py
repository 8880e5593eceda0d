"""The Job controller against a real Store with a FakeClock: pods from the template,
counting through the tracking finalizer, 1.33's success and failure conditions, events,
and the garbage collection of a deleted Job's pods."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from tests.waiting import advance, eventually
from vnode.clock import FakeClock
from vnode.sandbox.kubeapi import resources
from vnode.sandbox.kubeapi.jobs import TRACKING_FINALIZER, JobController
from vnode.sandbox.kubeapi.store import Store

JOBS = resources.by_kind("batch", "Job")
PODS = resources.by_kind("", "Pod")
EVENTS = resources.by_kind("", "Event")


@pytest.fixture
async def env() -> AsyncIterator[SimpleNamespace]:
    clock = FakeClock()
    store = Store(clock)
    task = asyncio.create_task(JobController(store, clock).run())
    for _ in range(5):
        await asyncio.sleep(0)
    yield SimpleNamespace(store=store, clock=clock)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def make_job(store: Store, name: str, **spec: Any) -> dict[str, Any]:
    return store.create(
        JOBS,
        "default",
        {
            "metadata": {"name": name},
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "main", "image": "busybox:1.36", "command": ["true"]}
                        ],
                    },
                },
                **spec,
            },
        },
    )


def job_pods(store: Store, job: str) -> list[dict[str, Any]]:
    pods, _ = store.list(PODS, "default", label_selector=f"job-name={job}")
    return pods


def live(store: Store, job: str) -> list[dict[str, Any]]:
    return [
        p
        for p in job_pods(store, job)
        if p["status"].get("phase") not in ("Succeeded", "Failed")
        and not p["metadata"].get("deletionTimestamp")
    ]


def finish(store: Store, pod: dict[str, Any], phase: str) -> None:
    store.mutate(
        PODS,
        "default",
        pod["metadata"]["name"],
        lambda p: p["status"].__setitem__("phase", phase),
        subresource="status",
    )


def status(store: Store, name: str) -> dict[str, Any]:
    return store.get(JOBS, "default", name).get("status") or {}


def condition_types(store: Store, name: str) -> list[str]:
    return [c["type"] for c in status(store, name).get("conditions") or []]


def events(store: Store, name: str) -> list[tuple[str, str, str]]:
    items, _ = store.list(EVENTS, "default")
    return [
        (e["type"], e["reason"], e["message"]) for e in items if e["involvedObject"]["name"] == name
    ]


async def test_job_runs_pods_to_completion(env: SimpleNamespace) -> None:
    job = make_job(env.store, "hello", completions=2, parallelism=1)
    (pod,) = await eventually(lambda: live(env.store, "hello"))
    meta = pod["metadata"]
    assert meta["name"].startswith("hello-")
    assert meta["generateName"] == "hello-"
    assert meta["finalizers"] == [TRACKING_FINALIZER]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": "hello",
            "uid": job["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    uid = job["metadata"]["uid"]
    assert meta["labels"] == {
        "app": "hello",
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": "hello",
        "controller-uid": uid,
        "job-name": "hello",
    }
    st = await eventually(
        lambda: status(env.store, "hello") if status(env.store, "hello").get("active") else None
    )
    assert st["active"] == 1
    assert st["startTime"]
    assert st["uncountedTerminatedPods"] == {}
    assert st["ready"] == 0

    finish(env.store, pod, "Succeeded")
    await eventually(lambda: status(env.store, "hello").get("succeeded") == 1)
    await eventually(
        lambda: not env.store.get(PODS, "default", meta["name"])["metadata"].get("finalizers")
    )
    (second,) = await eventually(lambda: live(env.store, "hello"))
    finish(env.store, second, "Succeeded")
    await eventually(lambda: "Complete" in condition_types(env.store, "hello"))
    st = status(env.store, "hello")
    assert condition_types(env.store, "hello") == ["SuccessCriteriaMet", "Complete"]
    complete = st["conditions"][1]
    assert (complete["reason"], complete["message"]) == (
        "CompletionsReached",
        "Reached expected number of succeeded pods",
    )
    assert st["succeeded"] == 2
    assert "failed" not in st and "active" not in st
    assert st["completionTime"]
    assert list(st) == [
        "conditions",
        "startTime",
        "completionTime",
        "succeeded",
        "terminating",
        "uncountedTerminatedPods",
        "ready",
    ]
    evs = events(env.store, "hello")
    assert [e[1] for e in evs].count("SuccessfulCreate") == 2
    assert ("Normal", "Completed", "Job completed") in evs
    assert ("Normal", "SuccessfulCreate", f"Created pod: {meta['name']}") in evs


async def test_parallelism_caps_active_pods(env: SimpleNamespace) -> None:
    make_job(env.store, "wide", completions=5, parallelism=3)
    await eventually(lambda: len(live(env.store, "wide")) == 3)
    await eventually(lambda: status(env.store, "wide").get("active") == 3)
    for pod in live(env.store, "wide")[:2]:
        finish(env.store, pod, "Succeeded")
    # 5 - 2 succeeded = 3 still needed, so three run again.
    await eventually(lambda: status(env.store, "wide").get("succeeded") == 2)
    await eventually(lambda: len(live(env.store, "wide")) == 3)


async def test_backoff_limit_fails_the_job(env: SimpleNamespace) -> None:
    make_job(env.store, "flaky", backoffLimit=1)
    (pod,) = await eventually(lambda: live(env.store, "flaky"))
    finish(env.store, pod, "Failed")
    await eventually(lambda: status(env.store, "flaky").get("failed") == 1)
    await asyncio.sleep(0)
    assert not live(env.store, "flaky")  # the replacement waits for the 10 s backoff
    await advance(env.clock, 11)
    (again,) = await eventually(lambda: live(env.store, "flaky"))
    finish(env.store, again, "Failed")
    await eventually(lambda: "Failed" in condition_types(env.store, "flaky"))
    st = status(env.store, "flaky")
    assert condition_types(env.store, "flaky") == ["FailureTarget", "Failed"]
    for c in st["conditions"]:
        assert (c["reason"], c["message"]) == (
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        )
    assert st["failed"] == 2
    assert "completionTime" not in st
    assert (
        "Warning",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    ) in events(env.store, "flaky")


async def test_active_deadline_stops_the_job(env: SimpleNamespace) -> None:
    make_job(env.store, "slow", activeDeadlineSeconds=30)
    await eventually(lambda: live(env.store, "slow"))
    await advance(env.clock, 31)
    await eventually(lambda: "Failed" in condition_types(env.store, "slow"))
    reasons = {c["reason"] for c in status(env.store, "slow")["conditions"]}
    assert reasons == {"DeadlineExceeded"}
    assert not job_pods(env.store, "slow")  # the unbound pod was deleted at once
    assert (
        "Warning",
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    ) in events(env.store, "slow")


async def test_deleted_pod_counts_as_failed_and_is_replaced(env: SimpleNamespace) -> None:
    make_job(env.store, "again")
    (pod,) = await eventually(lambda: live(env.store, "again"))
    env.store.delete(PODS, "default", pod["metadata"]["name"])
    await eventually(lambda: status(env.store, "again").get("failed") == 1)
    await eventually(lambda: not env.store.exists(PODS, "default", pod["metadata"]["name"]))
    await advance(env.clock, 11)
    await eventually(lambda: live(env.store, "again"))


async def test_deleting_a_job_deletes_its_pods(env: SimpleNamespace) -> None:
    make_job(env.store, "gone", parallelism=2, completions=4)
    await eventually(lambda: len(live(env.store, "gone")) == 2)
    env.store.delete(JOBS, "default", "gone", propagation_policy="Background")
    await eventually(lambda: not job_pods(env.store, "gone"))


async def test_orphan_finalizer_releases_the_pods(env: SimpleNamespace) -> None:
    make_job(env.store, "keep")
    (pod,) = await eventually(lambda: live(env.store, "keep"))
    env.store.mutate(
        JOBS, "default", "keep", lambda j: j["metadata"].__setitem__("finalizers", ["orphan"])
    )
    env.store.delete(JOBS, "default", "keep")
    await eventually(lambda: not env.store.exists(JOBS, "default", "keep"))
    left = env.store.get(PODS, "default", pod["metadata"]["name"])
    assert "ownerReferences" not in left["metadata"]
    assert not left["metadata"].get("finalizers")
    assert not left["metadata"].get("deletionTimestamp")


async def test_ttl_after_finished_removes_the_job(env: SimpleNamespace) -> None:
    make_job(env.store, "brief", ttlSecondsAfterFinished=20)
    (pod,) = await eventually(lambda: live(env.store, "brief"))
    finish(env.store, pod, "Succeeded")
    await eventually(lambda: "Complete" in condition_types(env.store, "brief"))
    await advance(env.clock, 21)
    await eventually(lambda: not env.store.exists(JOBS, "default", "brief"))
    await eventually(lambda: not job_pods(env.store, "brief"))


async def test_suspend_and_resume(env: SimpleNamespace) -> None:
    make_job(env.store, "paused", suspend=True)
    cond = await eventually(
        lambda: [
            c
            for c in status(env.store, "paused").get("conditions") or []
            if c["type"] == "Suspended"
        ]
    )
    assert (cond[0]["status"], cond[0]["reason"]) == ("True", "JobSuspended")
    assert not job_pods(env.store, "paused")
    env.store.mutate(JOBS, "default", "paused", lambda j: j["spec"].__setitem__("suspend", False))
    await eventually(lambda: live(env.store, "paused"))
    cond = [c for c in status(env.store, "paused")["conditions"] if c["type"] == "Suspended"]
    assert (cond[0]["status"], cond[0]["reason"]) == ("False", "JobResumed")


# -- end to end: the official client and kubectl against the sandbox API server ------------


def test_e2e_job_completes_and_kubectl_waits_for_it(k8s: Any, kubeapi: Any) -> None:
    import subprocess

    from kubernetes import client

    from tests.waiting import wait_for

    batch = client.BatchV1Api(k8s)
    v1 = client.CoreV1Api(k8s)
    batch.create_namespaced_job(
        "default",
        {
            "metadata": {"name": "pi"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "main", "image": "busybox:1.36", "command": ["true"]}
                        ],
                    }
                }
            },
        },
    )
    pods = wait_for(
        lambda: v1.list_namespaced_pod("default", label_selector="job-name=pi").items,
        what="job pod",
    )
    name = pods[0].metadata.name
    v1.patch_namespaced_pod_status(name, "default", {"status": {"phase": "Succeeded"}})
    done = subprocess.run(
        ["kubectl", "wait", "--for=condition=complete", "job/pi", "--timeout=30s"],
        env=kubeapi.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "job.batch/pi condition met"
    job = batch.read_namespaced_job("pi", "default")
    assert job.status.succeeded == 1
    batch.delete_namespaced_job("pi", "default", propagation_policy="Background")
    wait_for(
        lambda: not v1.list_namespaced_pod("default", label_selector="job-name=pi").items,
        what="job pods collected",
    )


def test_index_ranges_round_trip() -> None:
    from vnode.sandbox.kubeapi.jobs import format_indexes, parse_indexes

    assert format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert format_indexes(set()) == ""


async def test_indexed_job_runs_each_index_once(env: SimpleNamespace) -> None:
    make_job(env.store, "idx", completions=3, parallelism=2, completionMode="Indexed")
    pods = await eventually(
        lambda: live(env.store, "idx") if len(live(env.store, "idx")) == 2 else None
    )
    by_index = {
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in pods
    }
    assert set(by_index) == {"0", "1"}
    zero = by_index["0"]
    assert zero["metadata"]["generateName"] == "idx-0-"
    assert zero["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "0"
    assert zero["spec"]["hostname"] == "idx-0"
    assert {
        "name": "JOB_COMPLETION_INDEX",
        "valueFrom": {
            "fieldRef": {
                "apiVersion": "v1",
                "fieldPath": "metadata.labels['batch.kubernetes.io/job-completion-index']",
            }
        },
    } in zero["spec"]["containers"][0]["env"]
    finish(env.store, by_index["1"], "Succeeded")
    await eventually(lambda: status(env.store, "idx").get("completedIndexes") == "1")
    # Index 2 is the one still missing.
    pods = await eventually(
        lambda: live(env.store, "idx") if len(live(env.store, "idx")) == 2 else None
    )
    assert {
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods
    } == {"0", "2"}
    for pod in pods:
        finish(env.store, pod, "Succeeded")
    await eventually(lambda: "Complete" in condition_types(env.store, "idx"))
    st = status(env.store, "idx")
    assert (st["completedIndexes"], st["succeeded"]) == ("0-2", 3)


def _failed_pod(exit_code: int | None = None, condition: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Failed"}
    if exit_code is not None:
        status["containerStatuses"] = [
            {"name": "main", "state": {"terminated": {"exitCode": exit_code}}},
            {"name": "side", "state": {"terminated": {"exitCode": 0}}},
        ]
    if condition:
        status["conditions"] = [{"type": condition, "status": "True"}]
    return {"metadata": {"namespace": "default", "name": "mypod"}, "status": status}


def test_pod_failure_policy_matching() -> None:
    from vnode.sandbox.kubeapi.jobs import Verdict, match_pod_failure_policy

    policy = {
        "rules": [
            {"action": "Unknown", "onExitCodes": {"operator": "In", "values": [1, 2]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "Count", "onExitCodes": {"operator": "In", "values": [1, 2, 3]}},
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [1, 2, 3]},
            },
            {
                "action": "FailJob",
                "onPodConditions": [{"type": "ResourceExhausted", "status": "True"}],
            },
        ]
    }
    assert match_pod_failure_policy(None, _failed_pod(42)) == Verdict()
    assert match_pod_failure_policy(policy, _failed_pod(2)) == Verdict()
    assert match_pod_failure_policy(policy, _failed_pod(condition="DisruptionTarget")) == Verdict(
        count=False
    )
    assert match_pod_failure_policy(policy, _failed_pod(42)) == Verdict(
        fail_job=(
            "Container main for pod default/mypod failed with exit code 42 matching FailJob rule "
            "at index 3"
        )
    )
    assert match_pod_failure_policy(policy, _failed_pod(condition="ResourceExhausted")) == Verdict(
        fail_job="Pod default/mypod has condition ResourceExhausted matching FailJob "
        "rule at index 4"
    )
    assert match_pod_failure_policy(policy, _failed_pod()) == Verdict()  # nothing matched


async def test_pod_failure_policy_fails_or_ignores(env: SimpleNamespace) -> None:
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    make_job(env.store, "picky", podFailurePolicy=policy, backoffLimit=0)
    (pod,) = await eventually(lambda: live(env.store, "picky"))
    env.store.mutate(
        PODS,
        "default",
        pod["metadata"]["name"],
        lambda p: p["status"].update(
            {
                "phase": "Failed",
                "conditions": [
                    {"type": "DisruptionTarget", "status": "True", "reason": "Preempted"}
                ],
            }
        ),
        subresource="status",
    )
    # Ignored: not a failure, replaced at once even with backoffLimit 0.
    (again,) = await eventually(lambda: live(env.store, "picky"))
    assert "failed" not in status(env.store, "picky")
    env.store.mutate(
        PODS,
        "default",
        again["metadata"]["name"],
        lambda p: p["status"].update(
            {
                "phase": "Failed",
                "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 42}}}],
            }
        ),
        subresource="status",
    )
    await eventually(lambda: "Failed" in condition_types(env.store, "picky"))
    target = status(env.store, "picky")["conditions"][0]
    assert (target["type"], target["reason"]) == ("FailureTarget", "PodFailurePolicy")
    assert target["message"] == (
        f"Container main for pod default/{again['metadata']['name']} failed with exit code 42 "
        "matching FailJob rule at index 0"
    )


async def test_foreground_deletion_waits_for_the_pods(env: SimpleNamespace) -> None:
    from vnode.sandbox.kubeapi import binding

    make_job(env.store, "fg")
    (pod,) = await eventually(lambda: live(env.store, "fg"))
    binding.bind(env.store, env.clock, pod, "n1")  # a kubelet must now confirm its end
    env.store.mutate(
        JOBS,
        "default",
        "fg",
        lambda j: j["metadata"].__setitem__("finalizers", ["foregroundDeletion"]),
    )
    env.store.delete(JOBS, "default", "fg")
    name = pod["metadata"]["name"]
    await eventually(
        lambda: env.store.get(PODS, "default", name)["metadata"].get("deletionTimestamp")
    )
    assert env.store.exists(JOBS, "default", "fg")  # still waiting for its pod
    env.store.delete(PODS, "default", name, grace_period_seconds=0)  # the kubelet's word
    await eventually(lambda: not env.store.exists(JOBS, "default", "fg"))

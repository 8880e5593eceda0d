"""``/stats/summary`` and ``/metrics/resource`` for the simulated kubelet.

The shapes are the real kubelet's (see ``shared/reference/kubelet/stats``); the numbers
come from the container processes where Linux tells us cheaply (CPU time and resident
memory of each container's process group from /proc) and are otherwise plausible
constants: there is no cgroup per container here.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from typing import TYPE_CHECKING, Any

from vnode.clock import rfc3339
from vnode.sandbox.vm.runtime import image_id

if TYPE_CHECKING:
    from vnode.sandbox.vm.kubelet import Kubelet

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def image_ref(spec: dict[str, Any]) -> str:
    return image_id(str(spec.get("image", "")))


def _group_usage(pgid: int) -> tuple[int, int]:
    """(cpu ns, rss bytes) summed over the processes of one process group."""
    cpu = rss = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0, 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            cpu += (int(fields[11]) + int(fields[12])) * 1_000_000_000 // _TICK
            with open(f"/proc/{entry}/statm") as f:
                rss += int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return cpu, rss


def _meminfo() -> tuple[int, int]:
    total = avail = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key == "MemTotal":
                    total = int(rest.split()[0]) * 1024
                elif key == "MemAvailable":
                    avail = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return total, avail


def _fs(kubelet: Kubelet, t: str, used: int, inodes_used: int) -> dict[str, Any]:
    usage = shutil.disk_usage(kubelet.host.root)
    inodes = 16_777_216
    return {
        "time": t,
        "availableBytes": usage.free,
        "capacityBytes": usage.total,
        "usedBytes": used,
        "inodesFree": inodes - inodes_used,
        "inodes": inodes,
        "inodesUsed": inodes_used,
    }


def summary(kubelet: Kubelet, *, only_cpu_and_memory: bool = False) -> dict[str, Any]:
    now = kubelet.host.clock.now()
    t = rfc3339(now)
    total, avail = _meminfo()
    pods: list[dict[str, Any]] = []
    pods_cpu = pods_mem = 0
    for w in kubelet.pods():
        containers = []
        pod_cpu = pod_mem = 0
        for v in w.app_views:
            if v.state[0] != "running" or v.state[1].pid is None:
                continue
            inst = v.state[1]
            cpu, rss = _group_usage(inst.pid)
            pod_cpu += cpu
            pod_mem += rss
            c: dict[str, Any] = {
                "name": v.name,
                "startTime": rfc3339(inst.started_at or now),
                "cpu": {"time": t, "usageNanoCores": 0, "usageCoreNanoSeconds": cpu},
                "memory": {"time": t, "workingSetBytes": rss},
            }
            if not only_cpu_and_memory:
                log_size = inst.log_path.stat().st_size if inst.log_path.exists() else 0
                c["rootfs"] = _fs(kubelet, t, 8192, 5)
                c["logs"] = _fs(kubelet, t, log_size, 1)
                c["swap"] = {"time": t, "swapAvailableBytes": 0, "swapUsageBytes": 0}
            containers.append(c)
        if not containers:
            continue
        pods_cpu += pod_cpu
        pods_mem += pod_mem
        p: dict[str, Any] = {
            "podRef": {"name": w.name, "namespace": w.namespace, "uid": w.uid},
            "startTime": rfc3339(w.start_time or now),
            "containers": containers,
            "cpu": {"time": t, "usageNanoCores": 0, "usageCoreNanoSeconds": pod_cpu},
            "memory": {
                "time": t,
                "usageBytes": pod_mem,
                "workingSetBytes": pod_mem,
                "rssBytes": pod_mem,
                "pageFaults": 0,
                "majorPageFaults": 0,
            },
        }
        if not only_cpu_and_memory:
            p["ephemeral-storage"] = _fs(kubelet, t, 16384, 7)
            p["swap"] = {"time": t, "swapUsageBytes": 0}
        pods.append(p)
    used = max(0, total - avail)
    node: dict[str, Any] = {
        "nodeName": kubelet.setup.node_name,
        "systemContainers": [
            {
                "name": "pods",
                "startTime": rfc3339(kubelet.started_at),
                "cpu": {"time": t, "usageNanoCores": 0, "usageCoreNanoSeconds": pods_cpu},
                "memory": {
                    "time": t,
                    "availableBytes": avail,
                    "usageBytes": pods_mem,
                    "workingSetBytes": pods_mem,
                    "rssBytes": pods_mem,
                    "pageFaults": 0,
                    "majorPageFaults": 0,
                },
                "swap": {"time": t, "swapUsageBytes": 0},
            }
        ],
        "startTime": rfc3339(kubelet.started_at),
        "cpu": {"time": t, "usageNanoCores": 0, "usageCoreNanoSeconds": pods_cpu},
        "memory": {
            "time": t,
            "availableBytes": avail,
            "usageBytes": used,
            "workingSetBytes": used,
            "rssBytes": pods_mem,
            "pageFaults": 0,
            "majorPageFaults": 0,
        },
    }
    if not only_cpu_and_memory:
        node["network"] = {
            "time": t,
            "name": "eth0",
            "rxBytes": 0,
            "rxErrors": 0,
            "txBytes": 0,
            "txErrors": 0,
            "interfaces": [
                {"name": "eth0", "rxBytes": 0, "rxErrors": 0, "txBytes": 0, "txErrors": 0}
            ],
        }
        node["fs"] = _fs(kubelet, t, 1 << 30, 50_000)
        node["runtime"] = {
            "imageFs": _fs(kubelet, t, 1 << 20, 46),
            "containerFs": _fs(kubelet, t, 1 << 20, 46),
        }
        node["rlimit"] = {"time": t, "maxpid": 32768, "curproc": len(pods) + 1}
    node["swap"] = {"time": t, "swapAvailableBytes": 0, "swapUsageBytes": 0}
    return {"node": node, "pods": pods}


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def metrics_resource(kubelet: Kubelet) -> str:
    """Prometheus text with the series of the reference capture."""
    data = summary(kubelet, only_cpu_and_memory=True)
    now = _ms(kubelet.host.clock.now())
    series: dict[str, tuple[str, str, list[str]]] = {
        "container_cpu_usage_seconds_total": (
            "counter",
            "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
            [],
        ),
        "container_memory_working_set_bytes": (
            "gauge",
            "[STABLE] Current working set of the container in bytes",
            [],
        ),
        "container_start_time_seconds": (
            "gauge",
            "[STABLE] Start time of the container since unix epoch in seconds",
            [],
        ),
        "node_cpu_usage_seconds_total": (
            "counter",
            "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
            [],
        ),
        "node_memory_working_set_bytes": (
            "gauge",
            "[STABLE] Current working set of the node in bytes",
            [],
        ),
        "node_swap_usage_bytes": (
            "gauge",
            "[ALPHA] Current swap usage of the node in bytes. Reported only on non-windows systems",
            [],
        ),
        "pod_cpu_usage_seconds_total": (
            "counter",
            "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
            [],
        ),
        "pod_memory_working_set_bytes": (
            "gauge",
            "[STABLE] Current working set of the pod in bytes",
            [],
        ),
    }
    for p in data["pods"]:
        ref = p["podRef"]
        pl = f'namespace="{ref["namespace"]}",pod="{ref["name"]}"'
        for c in p["containers"]:
            cl = f'{{container="{c["name"]}",{pl}}}'
            series["container_cpu_usage_seconds_total"][2].append(
                f"{cl} {c['cpu']['usageCoreNanoSeconds'] / 1e9:g} {now}"
            )
            series["container_memory_working_set_bytes"][2].append(
                f"{cl} {c['memory']['workingSetBytes']} {now}"
            )
            start = dt.datetime.fromisoformat(c["startTime"].replace("Z", "+00:00"))
            series["container_start_time_seconds"][2].append(f"{cl} {start.timestamp():.10e}")
        series["pod_cpu_usage_seconds_total"][2].append(
            f"{{{pl}}} {p['cpu']['usageCoreNanoSeconds'] / 1e9:g} {now}"
        )
        series["pod_memory_working_set_bytes"][2].append(
            f"{{{pl}}} {p['memory']['workingSetBytes']} {now}"
        )
    node = data["node"]
    series["node_cpu_usage_seconds_total"][2].append(
        f" {node['cpu']['usageCoreNanoSeconds'] / 1e9:g} {now}"
    )
    series["node_memory_working_set_bytes"][2].append(
        f" {node['memory']['workingSetBytes']:g} {now}".replace("e+0", "e+0")
    )
    series["node_swap_usage_bytes"][2].append(f" 0 {now}")
    lines = []
    for name, (kind, help_text, samples) in series.items():
        if not samples:
            continue
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{s}" for s in samples)
    lines.append(
        "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting "
        "container metrics, 0 otherwise"
    )
    lines.append("# TYPE resource_scrape_error gauge")
    lines.append("resource_scrape_error 0")
    return "\n".join(lines) + "\n"

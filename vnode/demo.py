"""``vnode demo``: vnode's whole flow on this machine, in under a minute, nothing to set up.

A newcomer's first command has to work on a bare laptop and show the real thing, so the
demo runs the sandbox (Kubernetes API server, Compute Engine, simulated COS VMs, Cloud
Logging) and vnode itself with the GCE provider, all in this one process, and walks one
Job through the path a user would take on a real cluster: submit it with the toleration,
watch its pod go from Pending to Succeeded on a VM of its own, list it as
``kubectl get pods -o wide`` would (the server-side Table, wide columns included), read
its logs through the API server and vnode's kubelet API, delete the Job and check that
its VM is gone.

Each step either passes or stops the demo with one paragraph that names the step, what
was expected, what happened instead and where the logs are; the exit code is then 1
(130 when interrupted). vnode's and the emulators' log lines go to ``demo.log`` in the
state directory (also to stderr with ``verbose``), so the terminal shows only the demo.

``keep``: after the steps, everything stays up and the ``KUBECONFIG`` line is printed,
for trying ``kubectl`` by hand, until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp

from vnode import logging_setup
from vnode.gce import naming
from vnode.node.runner import run as run_vnode
from vnode.sandbox.runner import SANDBOX_PROJECT, SANDBOX_ZONE, Sandbox
from vnode.settings import (
    DEFAULT_TAINT,
    GCESettings,
    KubeletAPISettings,
    KubeSettings,
    MetricsSettings,
    NodeSettings,
    PodControllerSettings,
    Settings,
    validate,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

NODE = "vnode"
NAMESPACE = "default"
JOB = "hello-vnode"
LOG_FILE = "demo.log"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
POLL = 0.1
"""Seconds between looks at the cluster and the cloud while waiting for a step."""

NODE_READY_TIMEOUT = 20.0
POD_TIMEOUT = 40.0
CLEANUP_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
"""Seconds for each wait; together they stay within the minute the demo promises."""

GREETING = "Hello from a pod on a VM of its own."
FAREWELL = "Done: the VM goes away with the pod."
# Demo tuning: finished VMs go after 1 s instead of 60 s, pods and VM kubelets are polled
# every second (half a second) instead of every ten, so each step is seen at once.
DELETE_DELAY = 1.0
VM_STATUS_PERIOD = 0.5
POD_STATUS_PERIOD = 1.0


@dataclass(frozen=True)
class DemoOptions:
    state_dir: Path | None = None
    """Where the sandbox keeps its files and ``demo.log``; None: a temporary directory,
    removed after a successful run (kept after a failure, for its logs)."""
    keep: bool = False
    """Leave the sandbox and vnode running after the steps, until SIGINT/SIGTERM."""
    verbose: bool = False
    """Also write vnode's and the emulators' log lines to stderr."""
    cpu: str = "250m"
    memory: str = "256Mi"
    """Requests of the demo Job's container; vnode sizes the VM from them."""


class StepFailed(Exception):
    """A demo step did not do what it should; the message says what was expected."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"expected {expected}, but {got}")
        self.expected = expected
        self.got = got


def job_manifest(cpu: str, memory: str) -> dict[str, Any]:
    """The Job a user would submit: the Node's toleration and a command that prints."""
    script = (
        f'echo "{GREETING}"; '
        'echo "I am $POD_NAME, scheduled to Node $NODE_NAME."; '
        "sleep 2; "
        f'echo "{FAREWELL}"'
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": JOB, "namespace": NAMESPACE},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "tolerations": [
                        {
                            "key": DEFAULT_TAINT.key,
                            "operator": "Equal",
                            "value": DEFAULT_TAINT.value,
                            "effect": DEFAULT_TAINT.effect,
                        }
                    ],
                    "containers": [
                        {
                            "name": "hello",
                            "image": "busybox:1.36",
                            "command": ["sh", "-c", script],
                            "env": [
                                _field_env("POD_NAME", "metadata.name"),
                                _field_env("NODE_NAME", "spec.nodeName"),
                            ],
                            "resources": {"requests": {"cpu": cpu, "memory": memory}},
                        }
                    ],
                }
            },
        },
    }


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def vnode_settings(env: dict[str, str], state_dir: Path) -> Settings:
    """vnode with the GCE provider against the sandbox, tuned to show each step at once."""
    settings = Settings(
        provider="gce",
        node=NodeSettings(
            name=NODE, internal_ip="127.0.0.1", region="us-central1", zone=SANDBOX_ZONE
        ),
        kubelet_api=KubeletAPISettings(
            address="127.0.0.1", port=0, client_ca_file=Path(env["VNODE_CLIENT_CA_FILE"])
        ),
        pods=PodControllerSettings(status_period=POD_STATUS_PERIOD),
        kube=KubeSettings(kubeconfig=Path(env["KUBECONFIG"])),
        metrics=MetricsSettings(port=-1),  # nothing to scrape it here; keep 9090 free
        gce=GCESettings(
            project=SANDBOX_PROJECT,
            zones=(SANDBOX_ZONE,),
            compute_endpoint=env["VNODE_COMPUTE_ENDPOINT"],
            logging_endpoint=env["VNODE_LOGGING_ENDPOINT"],
            ca_dir=str(state_dir / "gce-ca"),
            delete_delay_seconds=DELETE_DELAY,
            status_period=VM_STATUS_PERIOD,
        ),
        shutdown_timeout=10.0,
    )
    validate(settings)
    return settings


# -- talking to the sandbox API server ----------------------------------------------


class Kube:
    """A small JSON client of the sandbox API server, as its admin (client certificate)."""

    def __init__(self, url: str, ca_file: Path, cert: tuple[Path, Path]) -> None:
        ctx = ssl.create_default_context(cafile=str(ca_file))
        ctx.load_cert_chain(*cert)
        self.url = url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx),
            timeout=aiohttp.ClientTimeout(total=15),
            headers={"User-Agent": "vnode-demo"},
        )

    async def close(self) -> None:
        await self.session.close()

    async def call(
        self, method: str, path: str, *, body: Any = None, accept: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:  # fmt: skip
        headers = {"Accept": accept}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        async with self.session.request(
            method, self.url + path, data=data, headers=headers, params=query
        ) as resp:
            return resp.status, await resp.read()

    async def json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        status, raw = await self.call(method, path, **kw)
        if status >= 300:
            raise StepFailed(f"{method} {path} to succeed", f"the API server answered "
                             f"{status}: {_status_message(raw)}")  # fmt: skip
        decoded: dict[str, Any] = json.loads(raw) if raw else {}
        return decoded

    async def text(self, path: str) -> str:
        status, raw = await self.call("GET", path, accept="*/*")
        if status >= 300:
            raise StepFailed(f"GET {path} to succeed", f"the API server answered "
                             f"{status}: {_status_message(raw)}")  # fmt: skip
        return raw.decode("utf-8", "replace")


def _status_message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
        return str(body.get("message") or body)
    except ValueError:
        return raw[:300].decode("utf-8", "replace")


def _pods_path() -> str:
    return f"/api/v1/namespaces/{NAMESPACE}/pods"


# -- what the terminal shows ---------------------------------------------------------


def format_table(table: dict[str, Any], *, wide: bool = True) -> str:
    """A server-side Table as ``kubectl get -o wide`` prints it: upper-case headers, columns
    padded by three spaces (kubectl's tabwriter), ``<none>`` for empty cells."""
    columns = table.get("columnDefinitions") or []
    shown = [i for i, c in enumerate(columns) if wide or not c.get("priority")]
    rows = [[str(c["name"]).upper() for c in (columns[i] for i in shown)]]
    for row in table.get("rows") or []:
        cells = row.get("cells") or []
        rows.append([_cell(cells[i] if i < len(cells) else None) for i in shown])
    widths = [max(len(r[i]) for r in rows) for i in range(len(shown))]
    lines = []
    for r in rows:
        padded = [cell.ljust(widths[i] + 3) for i, cell in enumerate(r[:-1])]
        lines.append("".join(padded) + (r[-1] if r else ""))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "<none>"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "<none>"
    return str(value)


class Progress:
    """One line rewritten in place on a terminal; a plain line per change elsewhere."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.last = ""
        self.width = 0

    def show(self, text: str) -> None:
        if self.tty:
            # A line longer than the terminal wraps, and \r then rewrites only its tail.
            text = text[: max(20, shutil.get_terminal_size().columns - 1)]
            self.width = max(self.width, len(text))
            self.out.write("\r" + text.ljust(self.width))
            self.out.flush()
        elif text != self.last:
            self.out.write(text + "\n")
            self.out.flush()
        self.last = text

    def done(self) -> None:
        if self.tty and self.width:
            self.out.write("\n")
            self.out.flush()
        self.width = 0


# -- the demo ------------------------------------------------------------------------


class Demo:
    """The steps, in order; :meth:`run` returns the process exit code."""

    def __init__(self, options: DemoOptions, state_dir: Path, out: IO[str], err: IO[str]) -> None:
        self.options = options
        self.state_dir = state_dir
        self.out = out
        self.err = err
        self.sandbox = Sandbox(state_dir)
        self.stop_vnode = asyncio.Event()
        self.vnode: asyncio.Task[int] | None = None
        self.kube: Kube | None = None
        self.step = ""
        self.started = time.monotonic()

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- waiting, with vnode watched all along --

    def _vnode_alive(self) -> None:
        task = self.vnode
        if task is None or not task.done():
            return
        if task.cancelled():
            how = "it was cancelled"
        elif (error := task.exception()) is not None:
            how = f"it stopped with {type(error).__name__}: {error}"
        else:
            how = f"it stopped on its own with exit code {task.result()}"
        raise StepFailed("vnode to keep running", how)

    async def _until(
        self,
        check: Callable[[], Awaitable[T | None]],
        within: float,
        expected: str,
        describe: Callable[[], str],
    ) -> T:
        """Call ``check`` until it returns a value; StepFailed after ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            self._vnode_alive()
            value = await check()
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise StepFailed(expected, f"after {within:.0f} s {describe()}")
            await asyncio.sleep(POLL)

    # -- steps --

    async def start_sandbox(self) -> dict[str, str]:
        env = await self.sandbox.start()
        api = self.sandbox.kubeapi
        assert api is not None and api.pki is not None  # the sandbox runs with its API server
        self.kube = Kube(api.url, api.pki.ca_file, api.pki.path("admin"))
        self.say(f"  Kubernetes API  {api.url}")
        self.say(f"  Compute Engine  {env['VNODE_COMPUTE_ENDPOINT']} (project {SANDBOX_PROJECT})")
        self.say(f"  Cloud Logging   {env['VNODE_LOGGING_ENDPOINT']}")
        return env

    async def start_vnode(self, env: dict[str, str]) -> None:
        settings = vnode_settings(env, self.state_dir)
        self.vnode = asyncio.create_task(run_vnode(settings, stop=self.stop_vnode), name="vnode")
        kube = self._kube()
        seen: dict[str, str] = {"status": "not registered"}

        async def ready() -> bool | None:
            status, raw = await kube.call("GET", f"/api/v1/nodes/{NODE}")
            if status != 200:
                return None
            conditions = json.loads(raw).get("status", {}).get("conditions") or []
            cond = {c["type"]: c["status"] for c in conditions}
            seen["status"] = f"Ready={cond.get('Ready', 'unknown')}"
            return True if cond.get("Ready") == "True" else None

        expected = f"Node {NODE} to be Ready within {NODE_READY_TIMEOUT:.0f} s"
        await self._until(ready, NODE_READY_TIMEOUT, expected, lambda: f"it is {seen['status']}")
        self.say(f"  Node {NODE} is Ready, tainted {DEFAULT_TAINT.key}={DEFAULT_TAINT.value}:"
                 f"{DEFAULT_TAINT.effect}")  # fmt: skip

    async def submit(self) -> None:
        job = job_manifest(self.options.cpu, self.options.memory)
        await self._kube().json("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", body=job)
        requests = job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        self.say(f"  job.batch/{JOB} created (requests cpu={requests['cpu']}, "
                 f"memory={requests['memory']}, toleration for the Node's taint)")  # fmt: skip

    async def watch_pod(self) -> dict[str, Any]:
        kube = self._kube()
        progress = Progress(self.out)
        since = time.monotonic()
        state: dict[str, Any] = {"text": "no pod yet"}

        async def finished() -> dict[str, Any] | None:
            pods = await kube.json("GET", _pods_path(), query={"labelSelector": f"job-name={JOB}"})
            items = pods.get("items") or []
            if not items:
                state["text"] = "the Job has no pod yet"
                progress.show(f"  {time.monotonic() - since:4.1f}s  waiting for the Job's pod")
                return None
            pod: dict[str, Any] = items[0]
            phase = pod.get("status", {}).get("phase") or "Pending"
            vm = self._vm_of(pod)
            line = f"pod {pod['metadata']['name']}  {phase:<9}  {vm}"
            elapsed = time.monotonic() - since
            progress.show(f"  {elapsed:4.1f}s  {line}" if progress.tty else f"  {line}")
            state["text"] = f"the pod is {phase} ({vm})"
            if phase == "Succeeded":
                return pod
            if phase == "Failed":
                status = pod.get("status", {})
                reason = status.get("reason") or _container_reason(pod) or "unknown reason"
                raise StepFailed(
                    "the pod to run to Succeeded",
                    f"it ended Failed: {reason}: {status.get('message') or 'no message'}",
                )
            return None

        try:
            pod = await self._until(
                finished, POD_TIMEOUT, f"the Job's pod to run to Succeeded within "
                f"{POD_TIMEOUT:.0f} s", lambda: str(state["text"]),
            )  # fmt: skip
        finally:
            progress.done()
        self.say(f"  the pod ran on its own VM and Succeeded in {time.monotonic() - since:.1f} s")
        return pod

    def _vm_of(self, pod: dict[str, Any]) -> str:
        """``VM <name> <machine type> <status>`` from the Compute emulator, or why not yet."""
        uid = pod.get("metadata", {}).get("uid", "")
        if not pod.get("spec", {}).get("nodeName"):
            return "not scheduled yet"
        name = naming.vm_name(uid)
        inst = self.sandbox.compute.instance(name)
        if inst is None:
            finished = pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
            return "no VM" if finished else f"VM {name} not created yet"
        machine = str(inst.get("machineType", "")).rsplit("/", 1)[-1]
        return f"VM {name} {machine} {inst.get('status', '')}"

    async def table(self) -> None:
        kube = self._kube()
        status, raw = await kube.call(
            "GET", _pods_path(), accept=TABLE_ACCEPT, query={"labelSelector": f"job-name={JOB}"}
        )
        body = json.loads(raw) if raw else {}
        if status != 200 or body.get("kind") != "Table":
            raise StepFailed("a Table of the pods", f"the API server answered {status} "
                             f"{body.get('kind') or _status_message(raw)}")  # fmt: skip
        self.say(f"$ kubectl get pods -o wide -l job-name={JOB}")
        self.say(format_table(body, wide=True))

    async def logs(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        text = await self._kube().text(f"{_pods_path()}/{name}/log")
        self.say(f"$ kubectl logs {name}")
        self.out.write(text if text.endswith("\n") or not text else text + "\n")
        self.out.flush()
        missing = [line for line in (GREETING, FAREWELL) if line not in text]
        if missing:
            raise StepFailed("the container's lines in the pod's logs",
                             f"{missing[0]!r} is not among them")  # fmt: skip

    async def delete(self, pod: dict[str, Any]) -> None:
        kube = self._kube()
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        await kube.json("DELETE", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{JOB}", body=body)
        self.say(f"$ kubectl delete job {JOB}")
        self.say(f'job.batch "{JOB}" deleted')
        name = pod["metadata"]["name"]

        async def gone() -> bool | None:
            status, _ = await kube.call("GET", f"{_pods_path()}/{name}")
            return True if status == 404 else None

        await self._until(gone, CLEANUP_TIMEOUT, f"the Job's pod to be deleted within "
                          f"{CLEANUP_TIMEOUT:.0f} s", lambda: "it is still there")  # fmt: skip

    async def no_vm_left(self) -> None:
        compute = self.sandbox.compute

        async def empty() -> bool | None:
            return True if not compute.instances else None

        def left() -> str:
            names = ", ".join(f"{i['name']} ({i.get('status')})" for i in compute.instances)
            return f"these remain: {names}"

        await self._until(empty, CLEANUP_TIMEOUT, "no VM left in Compute Engine", left)
        self.say("  no VM left in Compute Engine")

    def _kube(self) -> Kube:
        assert self.kube is not None, "the sandbox is not started"
        return self.kube

    # -- the whole run --

    async def steps(self) -> None:
        self.step = "start the sandbox"
        self.say("Starting the sandbox: Kubernetes API, Compute Engine, Cloud Logging ...")
        env = await self.start_sandbox()
        self.step = "start vnode"
        self.say(f"Starting vnode (GCE provider) as Node {NODE} ...")
        await self.start_vnode(env)
        self.step = "submit the Job"
        self.say(f"Submitting Job {JOB} ...")
        await self.submit()
        self.step = "run the Job's pod"
        pod = await self.watch_pod()
        self.step = "list the pods"
        self.say()
        await self.table()
        self.step = "read the pod's logs"
        self.say()
        await self.logs(pod)
        self.step = "delete the Job"
        self.say()
        await self.delete(pod)
        self.step = "check that no VM is left"
        await self.no_vm_left()

    async def run(self, interrupted: asyncio.Event) -> int:
        log_path = self.state_dir / LOG_FILE
        kept = " (kept if a step fails)" if self.options.state_dir is None else ""
        self.say(f"vnode demo: logs of vnode and the emulators go to {log_path}{kept}")
        steps = asyncio.create_task(self.steps(), name="demo-steps")
        stop = asyncio.create_task(interrupted.wait(), name="demo-interrupt")
        code = 0
        try:
            await asyncio.wait({steps, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not steps.done():
                steps.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await steps
                self.say(f"\nvnode demo: interrupted during step '{self.step}'; stopping.")
                return 130
            try:
                steps.result()
            except StepFailed as e:
                self._failure(str(e), log_path)
                return 1
            except Exception as e:
                log.exception("demo step %r failed", self.step)
                self._failure(f"it raised {type(e).__name__}: {e}", log_path)
                return 1
            took = time.monotonic() - self.started
            self.say(f"\nvnode demo: done in {took:.1f} s. The Job's pod ran on a Compute Engine "
                     "VM of its own (emulated here), its logs came through the API server and "
                     "vnode's kubelet API, and its VM is gone.")  # fmt: skip
            if self.options.keep:
                code = await self._keep(interrupted)
            return code
        finally:
            stop.cancel()
            await self.shutdown()

    def _failure(self, what: str, log_path: Path) -> None:
        self.err.write(
            f"\nvnode demo failed at step '{self.step}': {what.rstrip('.')}. "
            f"The log lines of vnode and the emulators are in {log_path}, and the "
            f"sandbox's files (VM roots, container logs) under {self.state_dir}.\n"
        )
        self.err.flush()

    async def _keep(self, interrupted: asyncio.Event) -> int:
        kubeconfig = self.state_dir / "kubeconfig"
        example = self.state_dir / "job.json"
        example.write_text(json.dumps(job_manifest(self.options.cpu, self.options.memory),
                                      indent=2) + "\n")  # fmt: skip
        self.say("\nThe sandbox and vnode keep running; in another terminal:")
        self.say(f"KUBECONFIG={kubeconfig}")
        self.say(f"  export KUBECONFIG={kubeconfig}")
        self.say(f"  kubectl get nodes -o wide; kubectl apply -f {example}")
        self.say(f"  kubectl get pods -o wide; kubectl logs job/{JOB}")
        self.say("Press Ctrl-C to stop.")
        await interrupted.wait()
        self.say("vnode demo: stopping.")
        return 0

    async def shutdown(self) -> None:
        """vnode first (it may still be deleting VMs), then the emulators."""
        if self.vnode is not None:
            self.stop_vnode.set()
            try:
                await asyncio.wait_for(asyncio.shield(self.vnode), STOP_TIMEOUT)
            except TimeoutError:
                log.error("vnode did not stop within %.0f s; cancelling it", STOP_TIMEOUT)
                self.vnode.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.vnode
            except Exception:
                log.exception("vnode ended with an error")
        if self.kube is not None:
            await self.kube.close()
        try:
            await self.sandbox.stop()
        except Exception:
            log.exception("stopping the sandbox failed")


def _container_reason(pod: dict[str, Any]) -> str:
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        for state in (cs.get("state") or {}).values():
            if isinstance(state, dict) and state.get("reason"):
                return str(state["reason"])
    return ""


@contextlib.contextmanager
def _logs_to(path: Path, level: str, verbose: bool) -> Iterator[None]:
    """vnode's and the emulators' log lines into ``path`` (and stderr when ``verbose``)."""
    stream = path.open("a", encoding="utf-8")
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    echo: logging.Handler | None = None
    try:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        logging_setup.configure(level, "text", stream=stream)
        if verbose:
            echo = logging.StreamHandler(sys.stderr)
            echo.addFilter(logging_setup.ContextFilter())
            echo.setFormatter(logging_setup.TextFormatter())
            root.addHandler(echo)
        logging.captureWarnings(True)
        yield
    finally:
        logging.captureWarnings(False)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        stream.close()


async def _main(demo: Demo) -> int:
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    try:
        return await demo.run(interrupted)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


def run_demo(
    options: DemoOptions,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    *,
    log_level: str = "info",
) -> int:
    """Run the demo (its own event loop); returns the exit code: 0, 1 on a failed step,
    130 when interrupted. ``out`` (stdout) shows the demo, ``err`` (stderr) a failure."""
    out = out or sys.stdout
    err = err or sys.stderr
    temporary = options.state_dir is None
    state_dir = (
        Path(tempfile.mkdtemp(prefix="vnode-demo-")) if options.state_dir is None
        else options.state_dir.resolve()
    )  # fmt: skip
    state_dir.mkdir(parents=True, exist_ok=True)
    demo = Demo(options, state_dir, out, err)
    with _logs_to(state_dir / LOG_FILE, log_level, options.verbose):
        code = asyncio.run(_main(demo))
    if temporary and code != 1:
        shutil.rmtree(state_dir, ignore_errors=True)
    elif temporary:
        err.write(f"vnode demo: kept {state_dir} for its logs.\n")
        err.flush()
    return code

"""How long the simulated kubelet takes for each step, in seconds; scalable for tests.

The defaults are what the reference kubelet v1.33 showed: transitions reach ``/pods``
within about a second (PLEG relists every 1 s), the first restart of a failed container
comes one sync later with no back-off, later ones wait a back-off that starts at 10 s
and doubles up to 5 min, and about 1 s after a pod finishes its sandbox is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Timings:
    sync: float = 1.0  # from a container event to the kubelet acting on it
    create: float = 0.3  # sandbox + container creation (ContainerCreating is visible)
    backoff_initial: float = 10.0  # first CrashLoopBackOff
    backoff_max: float = 300.0  # back-off cap; a run twice this long resets it
    sandbox_teardown: float = 1.0  # terminal pod -> PodReadyToStartContainers False
    manifest_poll: float = 0.1  # how fast a manifest change is noticed (inotify)
    log_poll: float = 0.02  # follow=true: how often the file is checked for new output
    drain: float = 0.5  # after exit, how long output still held by children is awaited
    log_monitor: float = 10.0  # how often log sizes are checked for rotation (at most)

    def scaled(self, factor: float) -> Timings:
        return replace(
            self,
            sync=self.sync * factor,
            create=self.create * factor,
            backoff_initial=self.backoff_initial * factor,
            backoff_max=self.backoff_max * factor,
            sandbox_teardown=self.sandbox_teardown * factor,
            log_monitor=self.log_monitor * factor,
        )


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() for the back-off message (``10s``, ``2m40s``, ``500ms``)."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{_trim(ns / size)}{unit}"
    h, rem = divmod(ns, 3600 * 10**9)
    m, rem = divmod(rem, 60 * 10**9)
    s = _trim(rem / 1e9)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def _trim(x: float) -> str:
    text = f"{x:.9f}".rstrip("0").rstrip(".")
    return text or "0"

"""vnode: a virtual kubelet that runs every pod on its own one-shot Compute Engine VM."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vnode")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

"""The ``vnode`` command: ``run | sandbox | demo | render | version``.

Each subcommand is one function; flags are declared next to it. Every flag of ``run``
can also come from a ``VNODE_*`` environment variable, so a ``sandbox.env`` file can be
sourced before ``vnode run``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from vnode import __version__


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"vnode {__version__}")
    return 0


def _add_sandbox(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sandbox",
        help="run the emulators (Kubernetes API, ...) in the foreground",
        description="Run the sandbox emulators on loopback until SIGINT/SIGTERM. When ready, "
        "DIR holds kubeconfig, sandbox.env and, last, ready.",
    )
    p.add_argument("--state-dir", type=Path, required=True, metavar="DIR",
                   help="where to write credentials, kubeconfig, sandbox.env and ready")
    p.add_argument("--no-kube", action="store_true",
                   help="leave the Kubernetes API out (to run vnode against a real cluster)")
    p.add_argument("--kube-port", type=int, default=0,
                   help="port for the Kubernetes API (default: any free port)")
    p.set_defaults(func=_cmd_sandbox)


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from vnode.sandbox.runner import serve

    asyncio.run(serve(args.state_dir.resolve(), kube=not args.no_kube, kube_port=args.kube_port))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vnode", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("version", help="print the version").set_defaults(func=_cmd_version)
    _add_sandbox(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

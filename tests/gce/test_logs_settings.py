"""``vnode run`` takes the Cloud Logging endpoint and log name as flags or variables
(``vnode sandbox`` writes ``VNODE_LOGGING_ENDPOINT``)."""

from __future__ import annotations

from vnode.cli import build_parser, settings_from
from vnode.settings import GCESettings, Settings


def settings(argv: list[str], environ: dict[str, str]) -> Settings:
    parser = build_parser()
    args = parser.parse_args(["run", *argv])
    return settings_from(args, args.run_parser, environ)


def test_defaults_read_the_real_service() -> None:
    assert (GCESettings().logging_endpoint, GCESettings().log_name) == ("", "vnode_containers")


def test_endpoint_and_log_name_from_flags_and_environment() -> None:
    s = settings([], {"VNODE_LOGGING_ENDPOINT": "127.0.0.1:4000", "VNODE_LOG_NAME": "mine"})
    assert (s.gce.logging_endpoint, s.gce.log_name) == ("127.0.0.1:4000", "mine")
    s = settings(["--logging-endpoint", "127.0.0.1:5000"], {"VNODE_LOGGING_ENDPOINT": "x:1"})
    assert s.gce.logging_endpoint == "127.0.0.1:5000"  # the flag wins

"""The Dockerfile, checked without building it (no container engine is needed).

What can be read from the file is asserted here: a base pinned to an exact Python
release, two stages with nothing but the virtualenv crossing between them, a numeric
non-root user that matches the chart's securityContext, the `vnode` entrypoint, no
build tools or secrets in the final image, and a .dockerignore that keeps local state
out of the build context.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CHART_VALUES = ROOT / "charts" / "vnode" / "values.yaml"

BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "clang", "cargo", "rustc", "git")
SECRET_WORDS = re.compile(r"key|secret|token|passw|credential|auth", re.IGNORECASE)


@dataclass
class Instruction:
    keyword: str
    args: str


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, with line continuations joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def global_args() -> dict[str, str]:
    """ARG defaults declared before the first FROM (the only ones FROM may use)."""
    values: dict[str, str] = {}
    for ins in instructions():
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG" and "=" in ins.args:
            name, _, value = ins.args.partition("=")
            values[name] = value
    return values


def stages() -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions():
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def base_image(stage: list[Instruction]) -> str:
    image = stage[0].args.split()[0]
    for name, value in global_args().items():
        image = image.replace("${" + name + "}", value).replace("$" + name, value)
    return image


def exec_form(stage: list[Instruction], keyword: str) -> list[str]:
    found = [ins for ins in stage if ins.keyword == keyword]
    assert found, f"the final stage has no {keyword}"
    value = json.loads(found[-1].args)  # exec form: a JSON array, no shell in between
    assert isinstance(value, list)
    return value


def final() -> list[Instruction]:
    return stages()[-1]


def test_base_is_pinned_to_an_exact_python_release() -> None:
    bases = [base_image(stage) for stage in stages()]
    for image in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
        assert "latest" not in image
    assert len(set(bases)) == 1, "build and run stages must share the base (same Python ABI)"


def test_two_stages_and_only_the_virtualenv_crosses() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    assert re.search(r"\bAS builder$", all_stages[0][0].args, re.IGNORECASE)
    copies = [ins.args for ins in final() if ins.keyword == "COPY"]
    assert copies == ["--from=builder /opt/vnode /opt/vnode"]
    assert "/opt/vnode/bin" in next(ins.args for ins in final() if ins.keyword == "ENV")


def test_runs_as_the_charts_numeric_non_root_user() -> None:
    users = [ins.args for ins in final() if ins.keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # USER comes after everything that needs root.
    last_user = max(i for i, ins in enumerate(final()) if ins.keyword == "USER")
    assert all(ins.keyword != "RUN" for ins in final()[last_user:])
    chart = yaml.safe_load(CHART_VALUES.read_text())
    assert chart["securityContext"]["runAsUser"] == int(uid)
    assert chart["podSecurityContext"]["runAsUser"] == int(uid)


def test_entrypoint_is_vnode() -> None:
    assert exec_form(final(), "ENTRYPOINT") == ["vnode"]
    assert exec_form(final(), "CMD") == ["run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "vnode" in scripts


def test_exposes_the_charts_kubelet_and_metrics_ports() -> None:
    exposed = {p for ins in final() if ins.keyword == "EXPOSE" for p in ins.args.split()}
    chart = yaml.safe_load(CHART_VALUES.read_text())
    assert {str(chart["kubeletAPI"]["port"]), str(chart["metrics"]["port"])} <= exposed
    assert "10255" not in exposed  # the kubelet's read-only port stays closed


def test_no_build_tools_in_the_final_image() -> None:
    for ins in final():
        if ins.keyword != "RUN":
            continue
        words = shlex.split(ins.args.replace("&&", " "))
        assert not {"apt-get", "apt", "apk", "pip", "pip3"} & set(words), ins.args
        assert not any(re.search(r"(^|/)pip3?$", w) for w in words), ins.args
        for tool in BUILD_TOOLS:
            assert tool not in words, f"{tool} in the final stage: {ins.args}"


def test_no_secrets_and_nothing_fetched_from_urls() -> None:
    for ins in instructions():
        assert ins.keyword != "ADD", "use COPY: ADD fetches URLs and unpacks archives"
        if ins.keyword in ("ENV", "ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", ins.args) or [ins.args.split()[0]]:
                assert not SECRET_WORDS.search(name), f"{ins.keyword} {name} looks like a secret"
        if ins.keyword == "COPY":
            assert not re.search(r"\.(pem|key|json)\b|kubeconfig|\.git\b", ins.args), ins.args
        assert "://" not in ins.args or ins.keyword == "LABEL", ins.args


def test_copies_only_files_that_exist() -> None:
    for ins in stages()[0]:
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            *sources, _ = ins.args.split()
            for source in sources:
                assert (ROOT / source).exists(), source


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        candidates = [path, *(path.rsplit("/", n)[0] for n in range(1, path.count("/") + 1))]
        if any(
            fnmatch.fnmatch(c, glob) or fnmatch.fnmatch(c, glob.removeprefix("**/"))
            for c in candidates
        ):
            result = not negate
    return result


def test_dockerignore_keeps_local_state_out_and_sources_in() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".venv/bin/python", ".git/config", ".pytest_cache/x", "vnode/__pycache__/a.pyc"):
        assert ignored(path, patterns), path
    for path in ("pyproject.toml", "README.md", "vnode/cli.py", "vnode/node/runner.py"):
        assert not ignored(path, patterns), path

"""The repository's copy of the reference recordings must not drift from the shared one."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

from tests.refdata import REFERENCE

REPO = Path(__file__).resolve().parents[1]


def _shared() -> Path | None:
    for candidate in (os.environ.get("VNODE_SHARED_REFERENCE"), REPO.parent / "shared/reference"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_copy_holds_both_recordings() -> None:
    assert (REFERENCE / "kube-apiserver/README.md").is_file()
    assert (REFERENCE / "kubelet/README.md").is_file()


def test_copy_matches_the_shared_recordings() -> None:
    shared = _shared()
    if shared is None:  # only this clone on the machine: the copy is all there is
        assert _files(REFERENCE), "tests/reference is empty"
        return
    assert _files(REFERENCE) == _files(shared)
    different = [
        name
        for name in sorted(_files(shared))
        if not filecmp.cmp(REFERENCE / name, shared / name, shallow=False)
    ]
    assert not different, f"tests/reference differs from {shared}: {different[:10]}"

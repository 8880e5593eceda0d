"""The recordings of the real kube-apiserver and kubelet that tests compare against.

``tests/reference`` is a verbatim copy of the shared ``reference`` folder, kept in the
repository so the suite runs the same on a machine that has only this clone;
``test_reference_copy.py`` checks the copy against the shared folder where it exists.
"""

from __future__ import annotations

from pathlib import Path

REFERENCE = Path(__file__).parent / "reference"
KUBE_APISERVER = REFERENCE / "kube-apiserver"
KUBELET = REFERENCE / "kubelet"

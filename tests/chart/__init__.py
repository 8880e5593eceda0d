"""Tests of the Helm chart (charts/vnode)."""

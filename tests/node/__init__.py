"""Tests of vnode.node: units on fake time, end-to-end on the sandbox API server."""

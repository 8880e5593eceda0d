"""Emulators of the real systems vnode talks to, for tests, the demo and benchmarks.

Nothing here reaches beyond loopback. Each emulator follows the recordings of the real
system in ``shared/reference`` (see DESIGN.md section 6); where it is kinder than the
real thing, vnode would meet that difference as a bug in production.
"""

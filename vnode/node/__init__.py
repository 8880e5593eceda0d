"""The Kubernetes face of vnode: everything a kubelet does toward the API server.

The Node and its Lease, the pod controller (watch, queue, reconcile, status), Events,
and the kubelet API. It drives a :class:`vnode.provider.Provider` and never imports a
backend.
"""

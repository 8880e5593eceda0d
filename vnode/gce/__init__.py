"""The GCE provider: every pod on the vnode Node runs on its own one-shot COS VM.

``machines`` sizes the VM from the pod, ``manifest`` turns the API pod into a static pod
that the VM's standalone kubelet can run without an API server, and the rest of the
package creates, watches and deletes the VMs. It meets ``vnode.node`` only at
:mod:`vnode.provider` and never imports the sandbox.
"""

"""A Kubernetes API server emulator (asyncio + aiohttp, HTTPS, client certificates).

Faithful to what a real kube-apiserver v1.33 answers (``shared/reference/kube-apiserver``)
for what the official Python client, ``kubectl`` and vnode do. Module map:

- ``resources``  the served kinds; routing, storage and discovery derive from it
- ``status``     Kubernetes ``Status`` errors
- ``selectors``  label and field selectors
- ``patches``    JSON merge, strategic merge and JSON patch
- ``admission``  defaulting and validation on create/update
- ``store``      objects, the one resourceVersion counter, the watch event window
- ``tables``     server-side Table output for ``kubectl get``
- ``discovery``  ``/api``, ``/apis``, ``/version`` (legacy and aggregated)
- ``openapi``    ``/openapi/v2`` and ``/openapi/v3`` for ``kubectl apply``
- ``auth``       authentication, authorization, TokenRequest/TokenReview/SAR
- ``logproxy``   ``pods/log`` proxied to the Node's kubelet
- ``scheduler``, ``jobs``, ``nodelifecycle``  the in-process controllers
- ``fit``, ``podaffinity``, ``topologyspread``, ``quantity``  the scheduler's rules
- ``binding``    ``pods/binding`` and ``pods/eviction``
- ``recorder``, ``wakeup``, ``objcache``  what the controllers share: events, store-change
  wake-ups, a copy-free object cache
- ``server``     the aiohttp application tying it together
"""

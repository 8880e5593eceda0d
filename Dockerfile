# vnode's container image: the `vnode` command in a virtualenv on a slim Python base.
#
# Two stages: the first builds wheels of vnode and its dependencies into a virtualenv, the
# second copies only that virtualenv onto a fresh base. Nothing used to build reaches the
# final image, and it runs as an unprivileged numeric user (Kubernetes can check
# runAsNonRoot against a number, not a name).
#
#   docker build -t vnode .
#   docker run --rm vnode --help

# The base is pinned to an exact Python release and Debian suite; bump both stages together.
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

# -- build --------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/vnode

WORKDIR /src
# The metadata first: the dependency layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
COPY vnode ./vnode

# Wheels first, then an offline install of exactly those wheels into the virtualenv.
RUN /opt/vnode/bin/pip wheel --wheel-dir /wheels . \
 && /opt/vnode/bin/pip install --no-index --find-links /wheels vnode \
 && /opt/vnode/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/vnode/bin/vnode version

# -- run ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="vnode" \
      org.opencontainers.image.description="A virtual kubelet that runs each pod on its own one-shot Compute Engine VM" \
      org.opencontainers.image.licenses="Apache-2.0"

# 65532, the conventional "nonroot" id, so the chart's runAsUser matches the image.
# /var/lib/vnode holds the CAs the VM kubelets trust: mount a volume there to keep them.
RUN groupadd --system --gid 65532 vnode \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/vnode \
      --shell /usr/sbin/nologin vnode \
 && install --directory --owner 65532 --group 65532 --mode 0700 /var/lib/vnode

COPY --from=builder /opt/vnode /opt/vnode

ENV PATH=/opt/vnode/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_STATE_HOME=/var/lib/vnode

USER 65532:65532
WORKDIR /var/lib/vnode

# The kubelet API (HTTPS; the API server fetches logs here), and /metrics + /healthz
# (plain HTTP; vnode run --metrics-port).
EXPOSE 10250 9090

ENTRYPOINT ["vnode"]
CMD ["run"]

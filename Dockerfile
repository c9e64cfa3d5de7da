# The bridge's container image; docs/image.md says how to build, run and check it.
#
# `make image` builds it (podman or docker) from wheels it builds on the host
# first (build/image/wheels: the project and its runtime dependencies, for the
# base's Python), so nothing is fetched from a package index inside the build.
# Two stages on one base: `install` makes the virtual environment /opt/bridge
# from those wheels; the runtime stage is the base plus that environment, a
# non-root user and the settings deploy/kubernetes/bridge.yaml relies on (uid
# 10001, ports 50051 and 9464, only /tmp writable). tests/test_image.py checks
# this file and the manifest against each other.

# The official Python slim image; `make image` falls back to an equivalent
# Debian base (python3, python3-venv, ca-certificates) where it cannot be pulled.
ARG BASE=docker.io/library/python:3.11-slim

FROM ${BASE} AS install
# The Python the host built the wheels for: refuse a base with another one.
ARG PYTHON_VERSION=3.11
# The embedded upstream (a test double) ships only when asked: EMBEDDED_UPSTREAM=true.
ARG EMBEDDED_UPSTREAM=false
# The embedded upstream's distribution and the package it installs (a test double,
# never a dependency of the server's wheel).
ARG UPSTREAM_DISTRIBUTION=myrouter-upstream
ARG UPSTREAM_PACKAGE=myrouter_upstream
COPY build/image/wheels/ /wheels/
RUN set -eu; \
    python3 -c "import sys; v = '%d.%d' % sys.version_info[:2]; \
sys.exit(None if v == '${PYTHON_VERSION}' else 'base has Python ' + v + ', wheels are for ${PYTHON_VERSION}')"; \
    python3 -m venv /opt/bridge; \
    extra=""; \
    if [ "${EMBEDDED_UPSTREAM}" = true ]; then extra="${UPSTREAM_DISTRIBUTION}"; fi; \
    /opt/bridge/bin/python -m pip install --quiet --no-index --no-cache-dir --no-compile \
        --find-links /wheels myrouter-bridge ${extra}; \
    if [ "${EMBEDDED_UPSTREAM}" != true ] \
        && /opt/bridge/bin/python -c "import ${UPSTREAM_PACKAGE}" 2>/dev/null; then exit 1; fi; \
    /opt/bridge/bin/python -m pip uninstall --quiet --yes pip setuptools; \
    rm -f /opt/bridge/bin/activate* /opt/bridge/bin/Activate.ps1; \
    /opt/bridge/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/bridge/lib; \
    /opt/bridge/bin/python -c "import bridge.cli, grpc, uvloop"; \
    echo 'bridge:x:10001:10001:myrouter-bridge:/nonexistent:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'bridge:x:10001:' >> /etc/group

FROM ${BASE}
ARG VERSION
ARG REVISION=unknown
ARG SOURCE
LABEL org.opencontainers.image.title="myrouter-bridge" \
      org.opencontainers.image.description="gRPC-to-HTTP bridge for MyRouter's OpenAI-compatible chat API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=install /etc/passwd /etc/group /etc/
COPY --from=install /opt/bridge /opt/bridge
# The bytecode is compiled (unchecked-hash .pyc: the modules never change, and
# the same wheels give the same files), so nothing is written beside the
# modules on the read-only root. The workers' metrics files go to /tmp.
ENV PATH=/opt/bridge/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BRIDGE_LISTEN=0.0.0.0:50051 \
    BRIDGE_METRICS_LISTEN=0.0.0.0:9464
VOLUME ["/tmp"]
USER 10001:10001
EXPOSE 50051/tcp 9464/tcp
STOPSIGNAL SIGTERM
# As PID 1 the bridge gets the runtime's SIGTERM itself (it installs handlers),
# passes it to its workers, drains and exits 0.
ENTRYPOINT ["/opt/bridge/bin/myrouter-bridge", "serve"]

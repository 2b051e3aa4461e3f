# syntax=docker/dockerfile:1
# The perf-operator image. Build from the repository root:
#   docker build -t perf-operator:0.1.0 .
# Runs as an unprivileged user on a read-only root filesystem (manifests/base/deployment.yaml).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# Wheels of the operator and every dependency; the runtime stage installs them offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/perf_operator-*.whl
USER 65532:65532
# /metrics, /healthz and /readyz
EXPOSE 8080
ENTRYPOINT ["perf-operator"]
CMD ["run", "--standalone"]

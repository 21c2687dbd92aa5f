# syntax=docker/dockerfile:1.7
# Cascade's container image, two variants of one tag (infra/terraform uses both):
#   docker build --target cpu -t <repo>:<tag>     .   API, CPU workers, beat, migrations (ONNX Runtime)
#   docker build --target gpu -t <repo>:<tag>-gpu .   stage-1/stage-2 GPU workers (TensorRT)
# The GPU variant relies on the host's NVIDIA driver (EKS AL2023 NVIDIA AMI + device plugin);
# CUDA, cuDNN and TensorRT libraries come from their pip wheels, so both variants share the
# same slim Python base. Multi-stage: compilers and pip caches stay in the build stages.
# --- shared base ------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

FROM base AS build-base
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# --- CPU build: torch from the CPU-only wheel index (the PyPI default build bundles CUDA) -----
FROM build-base AS build-cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0 torchvision==0.28.0
COPY pyproject.toml requirements.lock README.md ./
COPY models ./models
COPY cascade ./cascade
COPY feedback ./feedback
COPY services ./services
# The s3 extra (s3fs): CASCADE_BLOB_URL is s3://... in production.
RUN pip install -c requirements.lock ".[s3]"

# --- GPU build: PyPI's CUDA torch build and the tensorrt extra -------------------------------
FROM build-base AS build-gpu
COPY pyproject.toml requirements.lock README.md ./
COPY models ./models
COPY cascade ./cascade
COPY feedback ./feedback
COPY services ./services
RUN pip install -c requirements.lock ".[tensorrt,s3]"

# --- runtimes: non-root, read-only-root friendly (writes go to /tmp and /var/cascade) ----------
FROM base AS runtime
ARG UID=10001
RUN groupadd --system --gid ${UID} cascade \
 && useradd --system --uid ${UID} --gid cascade --home-dir /var/cascade --shell /usr/sbin/nologin cascade \
 && mkdir -p /var/cascade /models /tmp/prometheus \
 && chown -R cascade:cascade /var/cascade /models /tmp/prometheus
ENV PATH=/opt/venv/bin:$PATH \
    CASCADE_VAR_DIR=/var/cascade \
    CASCADE_MODEL_DIR=/models \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
WORKDIR /var/cascade
# CASCADE_PORT (web) and CASCADE_METRICS_PORT (workers) defaults, cascade/config.py.
EXPOSE 8000 9808
# Kubernetes uses its own probes; this is for plain `docker run`: the web app answers
# /healthz on CASCADE_PORT, a worker answers /metrics on CASCADE_METRICS_PORT.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u\nfor url in ('http://127.0.0.1:%s/healthz' % os.environ.get('CASCADE_PORT', '8000'), 'http://127.0.0.1:%s/metrics' % os.environ.get('CASCADE_METRICS_PORT', '9808')):\n    try:\n        u.urlopen(url, timeout=3); raise SystemExit(0)\n    except OSError:\n        pass\nraise SystemExit(1)"]
ENTRYPOINT []
CMD ["cascade", "--help"]

FROM runtime AS gpu
COPY --from=build-gpu /opt/venv /opt/venv
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CASCADE_ENGINE=tensorrt
USER 10001:10001

# Last stage = the default target of a plain `docker build .`.
FROM runtime AS cpu
COPY --from=build-cpu /opt/venv /opt/venv
ENV CASCADE_ENGINE=onnx
USER 10001:10001

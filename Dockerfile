# syntax=docker/dockerfile:1
# neuroscale: one image for the operator (`neuroscale run`) and the gateway (`neuroscale gateway`).
#
#   docker build -t neuroscale .                                   # default target: operator
#   docker build --target gateway-semantic -t neuroscale:semantic .  # + torch, for the in-process semantic cache
#
# torch's default Linux wheels bundle CUDA (gigabytes). For CPU-only wheels pass their index to pip:
#   --build-arg PIP_EXTRA_INDEX_URL=<PyTorch CPU wheel index>

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/neuroscale
ENV PATH=/opt/neuroscale/bin:$PATH
WORKDIR /src
# Metadata first so the dependency layer is reused while only the code changes.
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --upgrade pip setuptools wheel \
 && pip install .

FROM build AS build-semantic
ARG PIP_EXTRA_INDEX_URL=""
RUN pip install ".[semantic]"

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/neuroscale/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/neuroscale
# The uid the Helm chart's securityContext expects (65532, the conventional "nonroot").
RUN groupadd --system --gid 65532 neuroscale \
 && useradd --system --uid 65532 --gid 65532 --home-dir /home/neuroscale --create-home \
            --shell /usr/sbin/nologin neuroscale
WORKDIR /home/neuroscale
LABEL org.opencontainers.image.title="neuroscale" \
      org.opencontainers.image.description="Kubernetes operator and gateway for generative-AI inference on AWS Neuron" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
ENTRYPOINT ["neuroscale"]
CMD ["run"]

FROM runtime AS gateway-semantic
# Model caches go to /tmp: the chart mounts a writable emptyDir there under a read-only root filesystem.
ENV HF_HOME=/tmp/huggingface
COPY --from=build-semantic /opt/neuroscale /opt/neuroscale
CMD ["gateway"]

# Last stage, so a plain `docker build` produces the operator image (no torch).
FROM runtime AS operator
COPY --from=build /opt/neuroscale /opt/neuroscale

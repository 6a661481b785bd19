# syntax=docker/dockerfile:1.7
# The image every KFP component runs in (lightweight components use it as base_image).
# CPU:  docker build -f docker/components.Dockerfile -t ghcr.io/gliomagrade/gliomagrade:0.1.0 .
# CUDA: docker build -f docker/components.Dockerfile --build-arg TORCH_VARIANT=cu128 -t ghcr.io/gliomagrade/gliomagrade:0.1.0-cuda .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg

WORKDIR /opt/gliomagrade
# torch first, from the variant's index, so the project's range never pulls another build
RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"

COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
RUN pip install . && python -c "import gliomagrade.components, gliomagrade.pipelines"

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin glioma
USER 10001:10001
WORKDIR /home/glioma
ENTRYPOINT []
CMD ["glioma", "--help"]

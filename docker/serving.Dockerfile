# syntax=docker/dockerfile:1.7
# The KServe transformer / local predictor image (CPU; onnxruntime). Non-root, read-only root filesystem friendly.
# docker build -f docker/serving.Dockerfile -t ghcr.io/gliomagrade/gliomagrade-serving:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG TORCH_VERSION=2.13.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /opt/gliomagrade
RUN pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
RUN pip install . && python -c "import gliomagrade.serving"

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin glioma
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "gliomagrade.serving.transformer"]

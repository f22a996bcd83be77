# tidal on a slim Python base, CPU inference (ONNX Runtime's CPU build).
#
#   docker build -t tidal:0.1.0 .
#   docker run --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 \
#       -v "$PWD/models:/models:ro" tidal:0.1.0 --model-repository /models
#
# The GPU variant is docker/Dockerfile.cuda. Kubernetes probes the server itself
# (/v2/health/live, /v2/health/ready), so the image declares no HEALTHCHECK.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
# Optional extras of the tidal package, e.g. EXTRAS=torch for TorchScript models.
ARG EXTRAS=

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN python -m pip install /wheels/*.whl && rm -rf /wheels \
    && groupadd --system --gid 10001 tidal \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/tidal --create-home tidal \
    && mkdir -p /models /mnt/models /app \
    && chown tidal:tidal /models /mnt/models /app
# A numeric user, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/tidal
# HTTP, gRPC and Prometheus metrics of `tidal serve`; 5001 is `tidal score`'s /score port.
EXPOSE 8000 8001 8002 5001
ENTRYPOINT ["tidal", "serve"]

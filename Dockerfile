# failure-lab: one image for every role of the `failure-lab` CLI.
#
#   docker build -t failure-lab .
#   docker run --rm -p 127.0.0.1:8000:8000 failure-lab              # embedded default (serve)
#   docker run --rm failure-lab simulator --host 0.0.0.0 --port 8001  # stack roles, see
#   docker run --rm failure-lab exporter --host 0.0.0.0 --port 8000   # docker-compose.yml
#
# Two stages: the builder installs exactly what uv.lock says into /opt/venv; the runtime
# stage gets that venv and nothing else (no uv, no build tools, no sources). Both stages use
# the same Python image so the venv's interpreter path is valid in the runtime stage.
# Base images are pinned by tag (not by digest): Python 3.11 as in requires-python and the
# lock's target. Health checks are per role in docker-compose.yml, as the port depends on it.

ARG PYTHON_IMAGE=python:3.11.16-slim-trixie

# ---- builder ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# The same uv as the Makefile, from PyPI.
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
        "uv==${UV_VERSION}"

ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /src

# Dependencies first, from the lock alone, so code changes reuse this layer.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project

# Then the project itself, installed as a wheel (not editable: /src is not in the runtime).
COPY README.md ./
COPY failure_lab ./failure_lab
COPY simulator ./simulator
COPY exporter ./exporter
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --system --gid 10001 failurelab \
    && useradd --system --uid 10001 --gid failurelab --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin failurelab

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001

# 8000: serve / exporter (the contract), 8001: simulator (stack mode).
EXPOSE 8000 8001

ENTRYPOINT ["/opt/venv/bin/failure-lab"]
CMD ["serve", "--host", "0.0.0.0"]

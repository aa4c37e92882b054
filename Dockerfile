# syntax=docker/dockerfile:1
# Every spendstream image: only one workspace package and the libraries it declares are installed
# (`uv sync --frozen --no-dev --package <package>`), so an undeclared import fails in the image too.
# Build from the repository root, one image per build argument set:
#   docker build --build-arg SERVICE=ingest --build-arg PORT=8081 -t spendstream/ingest .   (likewise rollup 8082,
#   alerts 8083, retention 8084, connectors 8085, people 8086, console 8087)
#   docker build --build-arg PACKAGE=spendstream-cli --build-arg SOURCE=. --target cli -t spendstream/cli .

# SERVICE names a service (package spendstream-SERVICE, sources services/SERVICE, module spendstream.SERVICE).
# The CLI depends on every service, so its SOURCE is the whole context (.dockerignore limits it to the members).
ARG SERVICE
ARG PACKAGE=spendstream-${SERVICE}
ARG SOURCE=services/${SERVICE}

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# The console's front-end libraries, from the npm registry by its lock, built into its static/vendor directory
# (services/console/web/build.mjs); the console and the CLI (the monolith serves the console) ship them.
FROM node:20.19.5-bookworm-slim AS web
WORKDIR /web/services/console/web
COPY services/console/web/package.json services/console/web/package-lock.json services/console/web/build.mjs ./
RUN npm ci --no-audit --no-fund && npm run build

FROM python:3.11.14-slim-bookworm AS build
ARG PACKAGE
ARG SOURCE
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first (a layer that changes only with uv.lock): the lock plus every workspace member's
# pyproject.toml, which uv needs to read the workspace; no member's code yet.
COPY pyproject.toml uv.lock ./
COPY libs/guard/pyproject.toml libs/guard/
COPY libs/common/pyproject.toml libs/common/
COPY sdk/python/pyproject.toml sdk/python/
COPY services/ingest/pyproject.toml services/ingest/
COPY services/rollup/pyproject.toml services/rollup/
COPY services/alerts/pyproject.toml services/alerts/
COPY services/retention/pyproject.toml services/retention/
COPY services/connectors/pyproject.toml services/connectors/
COPY services/people/pyproject.toml services/people/
COPY services/console/pyproject.toml services/console/
COPY apps/cli/pyproject.toml apps/cli/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package ${PACKAGE}
COPY libs/guard libs/guard
COPY libs/common libs/common
COPY ${SOURCE} ${SOURCE}
COPY --from=web /web/services/console/src/spendstream/console/static/vendor services/console/src/spendstream/console/static/vendor
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package ${PACKAGE}

# The runtime stage: the same Python, the virtual environment, no uv, no compiler, no sources.
FROM python:3.11.14-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 spendstream \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent spendstream \
 && mkdir -p /var/lib/spendstream && chown 10001:10001 /var/lib/spendstream
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    SPENDSTREAM_HTTP_HOST=0.0.0.0 SPENDSTREAM_DATA_DIR=/var/lib/spendstream
WORKDIR /var/lib/spendstream
USER 10001:10001
# SIGTERM: a service drains first (what each one finishes: docs/operations.md), the CLI just stops.
STOPSIGNAL SIGTERM

FROM runtime AS cli
# One-shot jobs (`topics create`, `workspace create`): nothing to probe, nothing to drain.
HEALTHCHECK NONE
ENTRYPOINT ["spendstream"]
CMD ["--help"]

# The default target: a service, probed on its own port.
FROM runtime AS service
ARG SERVICE
ARG PORT
ENV SPENDSTREAM_HTTP_PORT=${PORT} SERVICE_MODULE=spendstream.${SERVICE}
EXPOSE ${PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"SPENDSTREAM_HTTP_PORT\"]}/healthz', timeout=2)"]
# exec: python is PID 1 and receives SIGTERM itself; arguments after the image name reach the service.
ENTRYPOINT ["/bin/sh", "-c", "exec python -m \"$SERVICE_MODULE\" \"$@\"", "--"]

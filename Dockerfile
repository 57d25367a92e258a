# syntax=docker/dockerfile:1
# SignVault image: `docker build -t signvault .`, or `docker compose up` (docker-compose.yml).

# --- build: install the project and its dependencies into a virtualenv --------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what the wheel needs (see .dockerignore): the package, the migrations
# (packed into app/_migrations by hatchling) and the metadata.
COPY pyproject.toml README.md ./
COPY migrations ./migrations
COPY app ./app
RUN pip install --no-cache-dir .

# --- runtime -----------------------------------------------------------------
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="SignVault" \
      org.opencontainers.image.description="Self-hosted PAdES signing server"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SIGNVAULT_DATA_DIR=/data

RUN groupadd --system --gid 10001 signvault \
    && useradd --system --uid 10001 --gid signvault --home-dir /data \
       --no-create-home --shell /usr/sbin/nologin signvault \
    && mkdir -p /data \
    && chown signvault:signvault /data \
    && chmod 0700 /data

COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/docker-entrypoint.sh

# SQLite database (embedded default), master key file, JWT key and blobs.
VOLUME ["/data"]
# An empty working directory: the settings also read `./.env`.
WORKDIR /srv/signvault
# Numeric, so that runtimes enforcing runAsNonRoot can verify it (the user is
# `signvault`, created above).
USER 10001:10001

EXPOSE 8000

# python, not curl: the slim image has no curl. urlopen raises on non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["signvault", "serve", "--host", "0.0.0.0", "--port", "8000"]

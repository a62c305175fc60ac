# syntax=docker/dockerfile:1
# One image for the api, the worker and the migration job; only the command differs
# (see docker-compose.yml).
FROM python:3.12-slim

# The default PyPI wheel on Linux x86_64 is CUDA-enabled. For a CPU-only image, build with
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC="torch>=2.4,<3"
ARG TORCH_INDEX_URL=""

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRAINSERVE_DATA_DIR=/data

RUN groupadd --system --gid 10001 trainserve \
    && useradd --system --uid 10001 --gid trainserve --create-home trainserve \
    && mkdir -p /data \
    && chown trainserve:trainserve /data

WORKDIR /srv/trainserve

# Layers from the slowest-changing to the fastest: torch (GBs), then the dependencies named
# in pyproject.toml, then our source. Editing the code rebuilds only the last layers.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"

# The Python client is a dependency of the CLI and is not on PyPI: installed from the tree.
COPY clients/python ./clients/python
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ./clients/python \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Editable on purpose: app/core/migrate.py finds alembic.ini and migrations/ next to app/,
# so the source tree stays in place at /srv/trainserve.
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps -e . \
    && python -m compileall -q app worker migrations

USER trainserve

EXPOSE 8000

# Liveness of the API process. The worker serves no HTTP: compose disables this there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["trainserve", "api", "--host", "0.0.0.0", "--port", "8000"]

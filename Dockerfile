# siyu-stream worker image: `docker build -t siyu-stream .`
# The entry point is the CLI, so the command picks the role: `worker` (default),
# `topics create`, `simulate ...`, `check-rules FILE`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# only what the wheel needs (see [tool.hatch.build] in pyproject.toml)
COPY pyproject.toml README.md ./
COPY siyu_stream ./siyu_stream
COPY topics ./topics
RUN pip install . \
    && rm -rf /src \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /data siyu \
    && mkdir -p /data /etc/siyu \
    && chown siyu:siyu /data

WORKDIR /data
# RocksDB state and local data (SIYU_DATA_DIR); a new named volume inherits the owner
VOLUME ["/data"]
USER 10001:10001
ENV SIYU_DATA_DIR=/data \
    SIYU_WEB_HOST=0.0.0.0 \
    SIYU_WEB_PORT=6066
EXPOSE 6066

ENTRYPOINT ["siyu-stream"]
CMD ["worker"]

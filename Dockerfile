# siyu-stream worker image: `docker build -t siyu-stream .`
# The entry point is the CLI, so the command picks the role: `worker` (default),
# `topics create`, `simulate ...`, `check-rules FILE`.
# Stage 1: the wheel, built where a C compiler is (the full image has gcc), so it carries
# the rule core compiled by mypyc (hatch_build.py). Both stages are Debian bookworm.
FROM python:3.11 AS wheel
WORKDIR /src
# only what the wheel needs (see [tool.hatch.build] in pyproject.toml)
COPY pyproject.toml README.md hatch_build.py ./
COPY siyu_stream ./siyu_stream
COPY topics ./topics
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=wheel /wheels /wheels
RUN pip install /wheels/*.whl \
    && rm -rf /wheels \
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

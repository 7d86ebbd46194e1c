# syntax=docker/dockerfile:1
# reconciler watch as a container: build a venv in one stage, run it as a non-root user in
# the next. All state lives under /data: the desired-state file, the journals
# (/data/.reconciler) and the file lock (/data/state). Mount /data as a volume.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY reconciler ./reconciler
RUN python -m venv /opt/reconciler && /opt/reconciler/bin/pip install --no-cache-dir /src

FROM python:3.12-slim
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin reconciler \
    && mkdir -p /data/state && chown -R reconciler /data
COPY --from=build /opt/reconciler /opt/reconciler
ENV PATH="/opt/reconciler/bin:$PATH" PYTHONUNBUFFERED=1 RECONCILER_STATE_DIR=/data/state
USER reconciler
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]
ENTRYPOINT ["reconciler"]
CMD ["watch", "-f", "/data/desired.yaml", "--log-format", "json", "--metrics-port", "9464", "--metrics-host", "0.0.0.0"]

# Bottega pipeline workers (the streaming feature pipeline; batch pipelines and jobs use the same image).
# Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t bottega-worker .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BOTTEGA_HOME=/var/lib/bottega
WORKDIR /app
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
COPY platform platform
COPY feature_store feature_store
COPY training training
COPY serving serving
COPY monitoring monitoring
RUN pip install --no-cache-dir -c requirements/constraints.txt ".[store,stream,spark]" \
    && useradd --system --home-dir /var/lib/bottega --create-home bottega \
    && mkdir -p /var/lib/bottega/offline && chown bottega /var/lib/bottega/offline
USER bottega
CMD ["bottega", "--help"]

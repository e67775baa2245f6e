# The Bottega prediction service (`bottega serve`): stateless; scale it out with replicas behind a load balancer.
# Build from the repository root:
#   docker build -f deploy/docker/serving.Dockerfile -t bottega-serving .
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
RUN pip install --no-cache-dir -c requirements/constraints.txt ".[serving,store,stream,xgboost]" \
    && useradd --system --home-dir /var/lib/bottega --create-home bottega
USER bottega
EXPOSE 8701
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8701/healthz')"
CMD ["bottega", "serve", "--host", "0.0.0.0", "--port", "8701"]

# monitoring-exporter container image.
#   docker build -t monitoring-exporter .
#   docker run -p 9810:9810 -e MONITORING_DATABASE_URL=postgresql://... monitoring-exporter
# Health is checked by the orchestrator (compose healthcheck, Kubernetes probes) against
# /livez and /readyz, so the image defines no HEALTHCHECK.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package build needs (pyproject.toml names README.md as the readme).
COPY pyproject.toml README.md ./
COPY exporter/ ./exporter/
RUN pip install . \
    && rm -rf /src \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent exporter

WORKDIR /
# Numeric, so Kubernetes can verify runAsNonRoot.
USER 10001:10001
EXPOSE 9810
ENTRYPOINT ["monitoring-exporter"]
CMD ["serve"]

"""monitoring-exporter: a Prometheus exporter and Alertmanager bridge backed by PostgreSQL."""

__version__ = "0.1.0"

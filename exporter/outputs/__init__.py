"""Outputs: things the service sends elsewhere (the Alertmanager v2 API client)."""

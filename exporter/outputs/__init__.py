"""Outputs: things the service sends elsewhere (Alertmanager silences)."""

"""Exposition: metric families rebuilt per scrape, rendered in the Prometheus formats."""

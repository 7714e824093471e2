"""Inputs: things that bring data in (probes, host figures, webhook and check parsing)."""

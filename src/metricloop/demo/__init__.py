"""Deterministic demo data (generate) and loading it into a database server (load)."""

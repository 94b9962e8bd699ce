"""Definitions: typed specs, YAML exchange (apply/export) and versioned storage."""

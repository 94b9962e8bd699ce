"""Tuning: a monitor's alert knobs searched against its feedback, suggested weekly, applied as a new version."""

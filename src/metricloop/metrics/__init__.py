"""Governed metrics: compile to SQL, query into long-form series, slice, and check data quality."""

"""alerting domain."""

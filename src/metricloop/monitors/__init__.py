"""monitors domain."""

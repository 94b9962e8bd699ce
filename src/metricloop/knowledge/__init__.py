"""Knowledge: the root cause and resolution written when an incident is resolved, found again when a similar one
opens (docs/knowledge.md)."""

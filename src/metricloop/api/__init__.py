"""HTTP API routers, one per domain. Views are thin: fetch, 404, call the service."""

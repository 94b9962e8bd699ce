"""The web console: server-rendered pages (Jinja + HTMX) for people who log in — home, incidents, metrics,
monitors. It calls the same services as the API (incidents/service.py, incidents/views.py, metrics/query.py,
monitors/service.py); its permissions are the API's roles and the user's metric domains."""

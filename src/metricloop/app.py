"""create_app(workspace): the FastAPI application (JSON API, OpenAPI at /docs; the incident pages of web/)."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from metricloop import __version__
from metricloop.api import contract, guards


def create_app(ws, *, background: bool = False) -> FastAPI:
    """The API. With background=True it also runs the scheduler, timers and the dispatcher in threads."""
    from metricloop.api import alerting, feedback, inbox, incidents, metrics, outbox, runs, sources, tuning
    from metricloop.knowledge import api as knowledge
    from metricloop.web import feedback_links, incident_page, links

    app = FastAPI(
        title="metricloop",
        version=__version__,
        description="Governed metrics, detection, incidents and feedback. 指标预警闭环。",
        docs_url=None,  # served below from vendored assets: no CDN, works offline
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "api" / "static"), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="metricloop API",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon.png",
        )

    app.state.workspace = ws

    contract.install(app)  # one error shape everywhere; the OpenAPI document lists each route's statuses
    app.add_middleware(guards.BodyLimit, max_bytes=ws.settings.max_body_bytes)
    app.state.rate_limiter = guards.RateLimiter(ws.settings.rate_limit_per_minute, ws.settings.rate_limit_burst)

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/console")  # the web console; it asks to log in first

    @app.get("/api/health", tags=["system"], dependencies=[Depends(guards.rate_limited)])
    def health() -> dict:
        return {"status": "ok", "version": __version__, "workspace": str(ws.home)}

    # The web console; its /incidents/{id} for a logged-in person comes before the message links' incident page.
    from metricloop.web.console.routes import install as install_console

    install_console(app)
    from metricloop.knowledge.web import router as knowledge_screen
    from metricloop.review.views import router as weekly_review
    from metricloop.web.console import feedback_panel, tuning_panel

    app.include_router(feedback_panel.router)  # the incident screen's feedback buttons
    app.include_router(tuning_panel.router)  # the monitor screen's tuning buttons
    app.include_router(knowledge_screen)
    app.include_router(weekly_review)  # GET /reports/weekly (docs/feedback.md, Weekly review)
    # The confirmations of signed message links share their paths with API writes: they must be tried first.
    app.include_router(links.confirmations)
    for module in (metrics, sources, runs, tuning, incidents, feedback, links, feedback_links, alerting, outbox, inbox,
                   incident_page, knowledge):
        app.include_router(module.router)

    if background:
        from metricloop.scheduler import Background

        worker = Background(ws)
        app.router.on_startup.append(worker.start)
        app.router.on_shutdown.append(worker.stop)
        app.state.background = worker
    return app

"""create_app(workspace): the FastAPI application (JSON API, OpenAPI at /docs; the incident pages of web/)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from metricloop import __version__
from metricloop.errors import DefinitionError, MetricloopError


def create_app(ws, *, background: bool = False) -> FastAPI:
    """The API. With background=True it also runs the scheduler, timers and the dispatcher in threads."""
    from metricloop.api import alerting, inbox, incidents, metrics, outbox, runs, sources
    from metricloop.web import incident_page, links

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

    @app.exception_handler(MetricloopError)
    async def _user_error(_request: Request, exc: MetricloopError) -> JSONResponse:
        body: dict = {"error": exc.message, "where": exc.where}
        if isinstance(exc, DefinitionError):
            body["problems"] = [vars(p) for p in exc.problems]
        return JSONResponse(status_code=exc.status_code, content=body)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"where": ".".join(str(p) for p in e["loc"]), "error": e["msg"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"error": "invalid request", "problems": problems})

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/console")  # the web console; it asks to log in first

    @app.get("/api/health", tags=["system"])
    def health() -> dict:
        return {"status": "ok", "version": __version__, "workspace": str(ws.home)}

    # The web console; its /incidents/{id} for a logged-in person comes before the message links' incident page.
    from metricloop.web.console.routes import install as install_console

    install_console(app)
    # The confirmations of signed message links share their paths with API writes: they must be tried first.
    app.include_router(links.confirmations)
    for module in (metrics, sources, runs, incidents, links, alerting, outbox, inbox, incident_page):
        app.include_router(module.router)

    if background:
        from metricloop.scheduler import Background

        worker = Background(ws)
        app.router.on_startup.append(worker.start)
        app.router.on_shutdown.append(worker.stop)
        app.state.background = worker
    return app

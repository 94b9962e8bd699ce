"""create_app(workspace): the FastAPI application (JSON API; OpenAPI at /docs)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse

from metricloop import __version__
from metricloop.errors import DefinitionError, MetricloopError


def create_app(ws) -> FastAPI:
    from metricloop.api import metrics, sources

    app = FastAPI(
        title="metricloop",
        version=__version__,
        description="Governed metrics, detection, incidents and feedback. 指标预警闭环。",
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
        return RedirectResponse("/docs")

    @app.get("/api/health", tags=["system"])
    def health() -> dict:
        return {"status": "ok", "version": __version__, "workspace": str(ws.home)}

    app.include_router(metrics.router)
    app.include_router(sources.router)
    return app

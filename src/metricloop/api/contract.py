"""One error contract for every answer that is not a success, and an OpenAPI document that lists them.

Every error is JSON `{"error": "what is wrong", "where": "which parameter, field or path" | null}` (a validation
error adds `problems`, one per parameter; a definition error adds the definition's `problems`): unknown routes
(404), methods (405), malformed JSON and values of the wrong type or out of range (422), tokens (401/403), bodies
over the limit (413), rate limits (429), the project's own errors (400, 404, 409, 502), and an unexpected failure
(500, whose traceback goes to the server's log only). The signed-link pages answer HTML for what they decide
themselves (a refused link, an incident that is gone or in another state), JSON for the rest.

`install(app)` adds the handlers and makes `/openapi.json` list each operation's real statuses: 401/403 where a
token is needed, 404 where a path names something, 413 where there is a body, 422 where there are parameters,
429 where the rate limit applies, and what a route declares itself (409, 502, …), each with the error schema.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from metricloop.errors import DefinitionError, MetricloopError

log = logging.getLogger("metricloop.api")


class ErrorBody(BaseModel):
    """What every error answers."""

    error: str = Field(description="what is wrong, in words a person can act on")
    where: str | None = Field(None, description="the parameter, field or path it is about, if any")
    problems: list[dict[str, Any]] | None = Field(
        None, description="one entry per problem (422: {where, error}; a definition error: its problems)"
    )


STATUS = {
    400: "refused: a parameter or body the project cannot use (`where` says which)",
    401: "no API token, or one that is not valid",
    403: "the token's role is not enough for this call",
    404: "nothing by that id or name",
    409: "the current state does not allow it (e.g. acknowledging twice)",
    413: "the request body is over the limit (METRICLOOP_MAX_BODY_BYTES)",
    422: "a parameter or body of the wrong type, malformed or out of range (`where` names it)",
    429: "too many requests from this address to the routes that need no token; wait for Retry-After seconds",
    502: "a source cannot be reached or a query on it failed",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that answers these statuses itself, e.g. `errors(409, 502)`."""
    return {code: {"description": STATUS[code]} for code in codes}


def error(status: int, message: str, where: str | None = None, *, headers=None, **extra) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, "where": where, **extra}, headers=headers)


def _value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _problem(e: dict[str, Any]) -> dict[str, str]:
    loc = [str(p) for p in e.get("loc", ())]
    if e.get("type") == "json_invalid":
        why = (e.get("ctx") or {}).get("error", "")
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return {"where": "body", "error": f"the body is not valid JSON ({why}{at})".replace(" ()", "")}
    msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
    if e.get("type") not in ("missing", "extra_forbidden") and "input" in e and not isinstance(e["input"], dict):
        msg += f" (got {_value(e['input'])})"
    return {"where": ".".join(loc) or "request", "error": msg}


def _allowed(exc: StarletteHTTPException) -> str:
    allow = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
    return f" (allowed: {allow})" if allow else ""


def install(app: FastAPI) -> None:
    @app.exception_handler(MetricloopError)
    async def _user_error(_request: Request, exc: MetricloopError) -> JSONResponse:
        extra = {"problems": [vars(p) for p in exc.problems]} if isinstance(exc, DefinitionError) else {}
        return error(exc.status_code, exc.message, exc.where, headers=getattr(exc, "headers", None), **extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()] or [{"where": "request", "error": "invalid"}]
        first = problems[0]
        message = f"invalid request: {first['where']}: {first['error']}"
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
        return error(422, message, first["where"], problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        path = request.url.path
        if exc.status_code == 404:
            message = f"nothing at {request.method} {path} (the API is under /api: see /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {path}{_allowed(exc)}"
        elif exc.status_code == 400 and "parsing the body" in str(exc.detail):
            message, path = "the body could not be read (check its Content-Type and encoding)", "body"
        else:
            message = str(exc.detail)
        return error(exc.status_code, message, path, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(500, "internal error: the server's log has the details", None)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]


# ------------------------------------------------------------------ the OpenAPI document


def _statuses(op: dict[str, Any]) -> dict[int, bool]:
    """{status: answered as JSON (else as the page's HTML)} for the errors the operation `op` can answer. Read off
    the operation itself: a token is needed where it has `security` (else the rate limit of the routes that need no
    token applies, api/guards.py), a body is sent where it has a `requestBody`, a path names something where it has
    an id or name in its path; what a route declares with `responses=errors(...)` is kept (as HTML for a page)."""
    responses = op.get("responses", {})
    html = any("text/html" in (r.get("content") or {}) for c, r in responses.items() if c.startswith("2"))
    out = {int(c): not html for c in responses if c.isdigit() and int(c) >= 400 and c != "422"}
    params = op.get("parameters", [])
    out[401 if op.get("security") else 429] = True
    if op.get("security"):
        out[403] = True
    if "requestBody" in op:
        out[413] = True
    if params or "requestBody" in op:
        out[422] = True
        if op.get("security"):  # the API's own checks of a value (the pages declare what they answer)
            out.setdefault(400, True)
    if any(p.get("in") == "path" and (p["name"] == "name" or p["name"].endswith("_id")) for p in params):
        out.setdefault(404, True)
    return out


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    json_error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    html_error = {"text/html": {"schema": {"type": "string"}}}
    retry_after = {"Retry-After": {"description": "seconds to wait", "required": True, "schema": {"type": "integer"}}}
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            for code, as_json in sorted(_statuses(op).items()):
                entry = responses.setdefault(str(code), {})
                if entry.get("description") in (None, "", "Validation Error"):
                    entry["description"] = STATUS.get(code, "error")
                entry["content"] = json_error if as_json else html_error
                if code == 429:
                    entry["headers"] = retry_after
    text = str(schema["paths"])
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"/{unused}'" not in text:
            components.pop(unused, None)
    app.openapi_schema = schema
    return schema

"""The console's static files (/assets), sent gzip-compressed to a browser that accepts it.

ECharts is 700 KB as shipped and about a third of that compressed: compressed, the first load of a page with a
chart stays under 300 KB, and a page without one does not load ECharts at all. Each file is compressed once per
process (and again only when it changes on disk), never per request.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache

from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

COMPRESSIBLE = (".js", ".css", ".svg", ".txt", ".map")


@lru_cache(maxsize=64)
def _compressed(path: str, mtime: float) -> bytes:
    with open(path, "rb") as f:
        return gzip.compress(f.read(), compresslevel=9, mtime=0)


class CompressedStatic(StaticFiles):
    async def get_response(self, path: str, scope) -> Response:
        response = await super().get_response(path, scope)
        if not isinstance(response, FileResponse) or not str(response.path).endswith(COMPRESSIBLE):
            return response
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if "gzip" not in headers.get("accept-encoding", ""):
            return response
        file = str(response.path)
        body = _compressed(file, os.stat(file).st_mtime)
        kept = {k: v for k, v in response.headers.items() if k.lower() in ("etag", "last-modified", "content-type")}
        return Response(
            body,
            status_code=response.status_code,
            headers=kept | {"Content-Encoding": "gzip", "Vary": "Accept-Encoding", "Cache-Control": "no-cache"},
        )

"""/api/knowledge: search the knowledge base, read and edit its entries (versioned), list the root-cause categories.

Reads need a viewer token and see the entries of the metrics in the caller's domains only, like incident reads;
an edit needs an operator. Errors follow api/contract.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from metricloop.api.contract import errors
from metricloop.api.deps import Actor, metric_scope, operator, viewer, workspace
from metricloop.api.params import Body, Limit, Offset, id_path
from metricloop.knowledge import categories as cats
from metricloop.knowledge import service
from metricloop.limits import MAX_TEXT

router = APIRouter(prefix="/api/knowledge", tags=["knowledge"])
EntryId = Annotated[int, id_path("knowledge entry")]


class EditBody(Body):
    category: str | None = Field(None, max_length=200, description="a root-cause category (see /categories)")
    cause: str | None = Field(None, max_length=MAX_TEXT, description="what caused it")
    actions: str | None = Field(None, max_length=MAX_TEXT, description="the actions that worked")
    reason: str = Field("", max_length=MAX_TEXT, description="why it is changed (kept with the version)")


@router.get("", responses=errors(400))
async def knowledge(
    ws=Depends(workspace),
    actor: Actor | None = Depends(viewer),
    q: Annotated[str | None, Query(max_length=MAX_TEXT, description="words to search for, in Chinese or English, "
                                   "e.g. 断货 or stock-out; leave it out to list the newest entries")] = None,
    category: Annotated[str | None, Query(max_length=200, description="only this root-cause category")] = None,
    metric: Annotated[str | None, Query(max_length=200, description="only entries of this metric")] = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> list[dict]:
    """Knowledge entries, best match first (`score`, `matched`: the query's words each contains); without `q`,
    the newest first."""

    def read() -> list[dict]:
        with ws.db.session() as s:
            catalog = ws.catalog()
            name = cats.check_category(catalog, category, retired=True) if category else None
            within = metric_scope(ws, actor)
            if q is None:
                rows = service.list_entries(s, within=within, category=name, metric=metric, limit=limit,
                                            offset=offset)
                return [service.entry_dict(s, catalog, e) for e in rows]
            found = service.search(s, catalog, q, within=within, category=name, metric=metric, limit=limit,
                                   offset=offset)
            return [{**service.entry_dict(s, catalog, e), "score": score, "matched": words}
                    for e, score, words in found]

    return await run_in_threadpool(read)


@router.get("/categories")
def categories(ws=Depends(workspace), _actor: Actor | None = Depends(viewer)) -> list[dict]:
    """The governed root-cause categories: the stock list with the workspace's `root_cause` definitions applied
    (retired ones are listed, and refused for new resolutions)."""
    return [c.as_dict() for c in cats.categories(ws.catalog())]


@router.get("/{entry_id}")
def entry(entry_id: EntryId, ws=Depends(workspace), actor: Actor | None = Depends(viewer)) -> dict:
    """One entry with its earlier versions (who wrote each, who replaced it, when and why)."""
    with ws.db.session() as s:
        e = service.get_entry(s, entry_id, within=metric_scope(ws, actor))
        return service.entry_dict(s, ws.catalog(), e, with_versions=True)


@router.patch("/{entry_id}", responses=errors(400))
def edit(entry_id: EntryId, body: EditBody, ws=Depends(workspace), actor: Actor = Depends(operator)) -> dict:
    """Change an entry's category, cause or actions; the entry as it was stays as a version."""
    with ws.db.session() as s:
        catalog = ws.catalog()
        e = service.edit_entry(s, catalog, entry_id=entry_id, actor=actor.name, category=body.category,
                               cause=body.cause, actions=body.actions, reason=body.reason,
                               within=metric_scope(ws, actor))
        return service.entry_dict(s, catalog, e, with_versions=True)

"""/api/sources: what is connected (secrets stay as ${ENV_VAR} references)."""

from fastapi import APIRouter, Depends

from metricloop.api.deps import viewer, workspace

router = APIRouter(prefix="/api/sources", tags=["sources"], dependencies=[Depends(viewer)])


@router.get("")
def list_sources(ws=Depends(workspace)) -> list[dict]:
    return [s.normalized() for s in ws.catalog().sources.values()]

"""Explode a metric over its dimensions: every combination (or chosen ones), the total, top-N, volume floor."""

from __future__ import annotations

from datetime import date, datetime
from itertools import combinations

import pandas as pd

from metricloop.definitions.kinds import Catalog
from metricloop.errors import QueryError
from metricloop.metrics.query import check_dimensions, query_groups

TOTAL = "*"


def slice_keys(df: pd.DataFrame, dims: list[str]) -> pd.Series:
    """'category=Drinks,region=East' (keys sorted) for each row; '*' for the total."""
    if not dims:
        return pd.Series(TOTAL, index=df.index, dtype=object)
    key = None
    for d in sorted(dims):
        part = d + "=" + df[d].astype(str)
        key = part if key is None else key + "," + part
    return key


def parse_slice(key: str) -> dict[str, str]:
    if not key or key == TOTAL:
        return {}
    return dict(p.split("=", 1) for p in key.split(","))


def combos_for(dims: list[str], combos: str | list[list[str]]) -> list[list[str]]:
    if isinstance(combos, list):
        return [list(c) for c in combos]
    if combos == "all":
        return [list(c) for n in range(1, len(dims) + 1) for c in combinations(dims, n)]
    if combos == "each":
        return [[d] for d in dims]
    if combos == "full":
        return [list(dims)] if dims else []
    raise QueryError(f"combos must be all, each, full or a list, not '{combos}'", where="combos")


def explode(
    ws,
    name: str,
    *,
    dims: list[str],
    combos: str | list[list[str]] = "all",
    total: bool = True,
    top_n: int | None = None,
    min_volume: float | None = None,
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
    grain: str | None = None,
    where: list[str] | dict | None = None,
    catalog: Catalog | None = None,
) -> pd.DataFrame:
    """Long form with a `slice` column and a `volume` column (row count, or the denominator for ratios).

    top_n keeps, per combination, the N slices with the largest total volume in the window.
    min_volume drops slices whose average volume per bucket is below the floor.
    """
    catalog = catalog or ws.catalog()
    metric = catalog.metric(name)
    check_dimensions(metric, dims, what="dims")
    groups = ([[]] if total else []) + combos_for(dims, combos)
    if len(groups) > 256:
        raise QueryError(f"{len(groups)} dimension combinations is too many; choose combos explicitly", where="combos")
    frames = []
    results = query_groups(ws, name, groups=groups, start=start, end=end, grain=grain, where=where, catalog=catalog)
    for group in groups:
        frame = results[tuple(group)].df
        frame["volume"] = frame["denominator"].fillna(0) if metric.is_ratio else frame["row_count"]
        frame["slice"] = slice_keys(frame, group)
        if (top_n or min_volume) and group:
            stats = frame.groupby("slice", sort=False)["volume"].agg(["sum", "mean"])
            keep = stats
            if min_volume:
                keep = keep[keep["mean"] >= min_volume]
            if top_n:
                keep = keep.nlargest(top_n, "sum")
            frame = frame[frame["slice"].isin(keep.index)]
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True, sort=False)
    # every dimension gets a column (null where a slice does not fix it), whichever combinations were asked for
    all_dims = list(dict.fromkeys([*dims, *(d for group in groups for d in group)]))
    for d in all_dims:
        if d not in out.columns:
            out[d] = pd.Series([None] * len(out), dtype=object)
    cols = ["time", "slice", *all_dims] + [c for c in out.columns if c not in ("time", "slice", *all_dims)]
    return out[cols]

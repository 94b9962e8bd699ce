"""Labelled multi-dimensional root-cause cases, in the style of the public benchmarks (Squeeze's A/B0–B4,
RiskLoc's semi-synthetic cubes): a cube of leaves with a forecast and a real value, where the real value
of every leaf under 1–3 root-cause elements (each of depth 1–3) moves by that element's own magnitude
(the ripple effect), the forecast carries noise, and many leaves are empty or tiny.

Each case is a CSV of leaf rows (`a, b, c, d[, e], real, predict`) and its labels (a list of causes,
each a dict of dimension values). The generator is seeded, so a case is the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DIM_NAMES = "abcde"


@dataclass
class Case:
    name: str
    frame: pd.DataFrame
    causes: list[dict[str, str]]
    depth: int
    n_causes: int
    noise: float


def make_case(seed: int, *, depth: int, n_causes: int, noise: float, n_dims: int | None = None,
              leaves: int | None = None) -> Case:
    rng = np.random.default_rng(seed)
    n_dims = n_dims or int(rng.integers(4, 6))
    target = leaves or int(rng.integers(10_000, 50_001))
    # cardinalities whose product is a few times the number of leaves, so the cube is sparse
    cards = rng.integers(5, 25, size=n_dims)
    while np.prod(cards.astype(float)) < 2 * target:
        cards[rng.integers(n_dims)] += 3
    dims = list(DIM_NAMES[:n_dims])
    # sample distinct leaves
    total = int(np.prod(cards.astype(np.int64)))
    flat = rng.choice(total, size=min(target, total), replace=False)
    codes = np.empty((n_dims, len(flat)), dtype=np.int64)
    rest = flat.copy()
    for i in reversed(range(n_dims)):
        codes[i] = rest % cards[i]
        rest //= cards[i]
    # base values: heavy-tailed sizes with a popularity per dimension value; a third of the leaves are empty
    pop = [rng.lognormal(0, 1.0, size=c) for c in cards]
    base = np.exp(rng.normal(1.0, 1.2, size=len(flat)))
    for i in range(n_dims):
        base *= pop[i][codes[i]]
    zero = rng.random(len(flat)) < 0.35
    base[zero] = 0.0
    real = base.copy()
    # forecast noise: relative and unbiased (a mean-one lognormal factor), so a sum of ordinary leaves is
    # on forecast on average; the real values are counts (Poisson), as orders or visits are
    real = rng.poisson(base).astype(np.float64)
    predict = base * np.exp(rng.normal(-noise**2 / 2, noise, size=len(flat))) if noise else base.copy()
    # root causes: disjoint elements of the given depth, each holding a real share of the volume
    chosen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    covered = np.zeros(len(flat), dtype=bool)
    tries = 0
    while len(chosen) < n_causes and tries < 2000:
        tries += 1
        subset = tuple(sorted(rng.choice(n_dims, size=depth, replace=False)))
        leaf = int(rng.integers(len(flat)))
        values = tuple(int(codes[i, leaf]) for i in subset)
        mask = np.ones(len(flat), dtype=bool)
        for i, val in zip(subset, values, strict=True):
            mask &= codes[i] == val
        share = base[mask].sum() / base.sum()
        if (mask & covered).any() or share < 0.01 or share > 0.5 or (mask & ~zero).sum() < 3:
            continue
        # no element may be an ancestor or descendant of another (disjoint masks already imply it)
        chosen.append((subset, values))
        covered |= mask
        magnitude = rng.uniform(0.2, 0.9)
        factor = (1 - magnitude) if rng.random() < 0.75 else (1 + 2 * magnitude)
        real[mask] = rng.poisson(base[mask] * factor)
    frame = pd.DataFrame({d: [f"{d}{c}" for c in codes[i]] for i, d in enumerate(dims)})
    frame["real"] = np.round(real, 3)
    frame["predict"] = np.round(predict, 3)
    causes = [{dims[i]: f"{dims[i]}{v}" for i, v in zip(subset, values, strict=True)} for subset, values in chosen]
    return Case(f"d{depth}_c{n_causes}_s{seed}", frame, causes, depth, len(chosen), noise)


def cases(per_cell: int, *, noises=(0.0, 0.05, 0.1), seed: int = 0):
    """`per_cell` cases for each depth (1–3) × number of causes (1–3), cycling through the noise levels."""
    k = 0
    for depth in (1, 2, 3):
        for n_causes in (1, 2, 3):
            for _ in range(per_cell):
                yield make_case(seed * 100_000 + k, depth=depth, n_causes=n_causes, noise=noises[k % len(noises)])
                k += 1

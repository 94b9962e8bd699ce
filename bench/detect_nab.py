"""NAB (the Numenta Anomaly Benchmark v1.1, 58 labelled series) through the default detector, scored
with NAB's own threshold sweep, beside a peer library's detector scored the same way.

    .venv/bin/python bench/detect_nab.py [--nab ../shared/benchmarks/nab] [--peer adtk|none] [--out DIR]

`metricloop detect` runs over every file exactly as the CLI does (default detector `auto`,
sensitivity 5, default calendar); `../shared/benchmarks/nab_score.py` (beside the NAB folder; the
repo's parent holds `shared/`) sweeps the threshold on the `score` column and prints the standard,
reward-low-FP and reward-low-FN scores (0 = flag nothing, 100 = perfect), shown beside the published
scores in that script's docstring. Alert events are runs of consecutive `is_anomaly` rows: per
series, in total, and on artificialNoAnomaly (five series without any anomaly).

The peer is ADTK (`pip install -e '.[bench]'`): `SeasonalAD` (seasonal period found by ADTK
itself) where it finds a seasonality, else `InterQuartileRangeAD`, c = 3, both sides; it fits each
series whole (not causally) and flags points, so its score is 0 or 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NAB = ROOT.parent / "shared" / "benchmarks" / "nab"


def load_scorer(nab: Path):
    path = nab.parent / "nab_score.py"
    spec = importlib.util.spec_from_file_location("nab_score", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"no NAB scorer at {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def published(scorer) -> list[tuple[str, float]]:
    """The published standard scores listed in the scorer's docstring."""
    doc = " ".join((scorer.__doc__ or "").split())
    m = re.search(r"Published standard scores:(.*?)(?:\.\s|$)", doc)
    if not m:
        return []
    return [(name.strip(), float(v)) for name, v in re.findall(r"([A-Za-z][\w ]*?)\s+(\d+(?:\.\d+)?)", m.group(1))]


def nab_files(nab: Path) -> list[Path]:
    return sorted(p for p in (nab / "data").rglob("*.csv"))


def score(scorer, nab: Path, out: Path) -> dict[str, float]:
    scorer.SCORE_COL = "score"
    with contextlib.redirect_stdout(io.StringIO()):
        res = scorer.main(str(nab), None, str(out))
    return {prof: r["normalized"] for prof, r in res.items()}


def events(flags: np.ndarray) -> int:
    f = np.asarray(flags, bool)
    return int(f[0]) + int((f[1:] & ~f[:-1]).sum()) if len(f) else 0


def run_ours(files: list[Path], nab: Path, out: Path) -> tuple[dict[str, int], float]:
    from metricloop.cli_detect import _calendar
    from metricloop.detect.csvio import detect_csv, write_csv

    cal = _calendar(True, None)  # the CLI's default calendar
    ev: dict[str, int] = {}
    t0 = time.process_time()
    for f in files:
        rel = f.relative_to(nab / "data")
        res = detect_csv(f, calendar=cal)
        write_csv(res.frame, out / rel)
        ev[str(rel)] = events(res.frame["is_anomaly"].to_numpy())
    return ev, time.process_time() - t0


def adtk_flags(values: pd.Series) -> np.ndarray:
    from adtk.data import validate_series
    from adtk.detector import InterQuartileRangeAD, SeasonalAD

    s = validate_series(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            flags = SeasonalAD(c=3.0, side="both").fit_detect(s)
        except Exception:  # noqa: BLE001 - "could not find significant seasonality" and friends
            flags = InterQuartileRangeAD(c=3.0).fit_detect(s)
    return flags.reindex(values.index).fillna(False).astype(bool).to_numpy()


def run_adtk(files: list[Path], nab: Path, out: Path) -> tuple[dict[str, int], float] | None:
    try:
        import adtk  # noqa: F401
    except ImportError:
        return None
    ev: dict[str, int] = {}
    t0 = time.process_time()
    for f in files:
        rel = f.relative_to(nab / "data")
        df = pd.read_csv(f)
        t = pd.to_datetime(df["timestamp"])
        # ADTK needs a unique, sorted index: score the de-duplicated series, map back to every row
        s = pd.Series(df["value"].to_numpy(float), index=t).groupby(level=0).mean().sort_index()
        flags = pd.Series(adtk_flags(s), index=s.index)
        row_flags = flags.reindex(t).fillna(False).to_numpy(bool)
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": df["timestamp"], "score": row_flags.astype(float),
                      "is_anomaly": row_flags}).to_csv(dest, index=False)
        ev[str(rel)] = events(row_flags)
    return ev, time.process_time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nab", type=Path, default=DEFAULT_NAB, help="the NAB folder (data/, labels/, config/)")
    ap.add_argument("--peer", default="adtk", choices=["adtk", "none"])
    ap.add_argument("--out", type=Path, default=None, help="keep the outputs here (default: a temporary folder)")
    args = ap.parse_args(argv)
    nab = args.nab.resolve()
    if not (nab / "data").is_dir():
        print(f"NAB data not found at {nab}/data (pass --nab)")
        return 1
    scorer = load_scorer(nab)
    files = nab_files(nab)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nab-") as tmp:
        base = args.out or Path(tmp)
        rows = []
        per_series: dict[str, dict[str, int]] = {}
        ev, secs = run_ours(files, nab, base / "auto")
        rows.append(("metricloop auto", score(scorer, nab, base / "auto"), secs))
        per_series["auto"] = ev
        if args.peer == "adtk":
            got = run_adtk(files, nab, base / "adtk")
            if got is None:
                print("peer: adtk is not installed (pip install -e '.[bench]'); no peer figures")
            else:
                ev_p, secs_p = got
                rows.append(("adtk SeasonalAD/IQR", score(scorer, nab, base / "adtk"), secs_p))
                per_series["adtk"] = ev_p

    n_windows = sum(len(v) for v in pd.read_json(nab / "labels" / "combined_windows.json", typ="series"))
    print(f"NAB v1.1: {len(files)} series, {n_windows} labelled anomaly windows; normalized scores "
          "(0 = flag nothing, 100 = perfect)")
    print(f"{'detector':<24}{'standard':>10}{'low FP':>10}{'low FN':>10}{'CPU s':>10}")
    for name, sc, secs in rows:
        print(f"{name:<24}{sc['standard']:>10.1f}{sc['reward_low_FP_rate']:>10.1f}"
              f"{sc['reward_low_FN_rate']:>10.1f}{secs:>10.1f}")
    for name, std in published(scorer):
        print(f"{name + ' (published)':<24}{std:>10.1f}")
    table = pd.DataFrame(per_series).rename_axis("series")
    print("\nalert events (runs of is_anomaly) per series:")
    with pd.option_context("display.max_rows", None, "display.width", 160):
        print(table.to_string())
    no_anom = table[table.index.str.startswith("artificialNoAnomaly")]
    for col in table.columns:
        print(f"{col}: {int(table[col].sum())} alert events in total against {n_windows} windows; "
              f"{int(no_anom[col].sum())} on artificialNoAnomaly ({len(no_anom)} series without an anomaly)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

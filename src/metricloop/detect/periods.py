"""Which cycle a series follows, found in its own past: autocorrelation with a significance test.

Periods are counted in points of the series' step. `detect_periods` looks at a window of history
(series × points, NaN = missing or kept out) and, per series, returns the period of its strongest
significant cycle, or 0 for none:

- the window is detrended (least-squares line) and its autocorrelation computed at every lag up to
  half the window (a cycle must be seen at least twice);
- a lag is a candidate where the autocorrelation is a local peak, significant against white noise
  (beyond `Z_SIG` standard errors), at least
  `MIN_ACF`, and preceded by a trough at least `MIN_DROP` lower (a smooth series whose
  autocorrelation only decays has no cycle);
- the strongest candidate wins; a divisor of it that is nearly as strong (`HARMONIC`) is preferred
  (a daily cycle repeats every week too), and a candidate within 2 % of a hint (the points in a day
  or a week of the series' step) is snapped to it.

The engine calls it on the warm-up and again as history grows (see `engine.run_engine`).
"""

from __future__ import annotations

import numpy as np

Z_SIG = 3.0  # standard errors a peak must clear
MIN_ACF = 0.4  # weakest cycle worth modelling
MIN_DROP = 0.4  # a peak must stand this far above the lowest correlation before it
HARMONIC = 0.85  # a divisor whose peak is this close to the best is the real period
MIN_CYCLES = 2


def autocorrelation(win: np.ndarray, max_lag: int) -> np.ndarray:
    """(m, H) → (m, max_lag + 1): autocorrelation of each detrended row, NaN filled with the row's
    mean, each lag normalised by its own number of pairs (an unbiased estimate: a cycle seen twice
    is not halved)."""
    m, h = win.shape
    fin = np.isfinite(win)
    t = np.arange(h, dtype=float)
    n = np.maximum(fin.sum(axis=1), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tm = np.where(fin, t, 0.0).sum(axis=1) / n
        ym = np.where(fin, win, 0.0).sum(axis=1) / n
        dt_ = np.where(fin, t - tm[:, None], 0.0)
        dy = np.where(fin, win - ym[:, None], 0.0)
        slope = (dt_ * dy).sum(axis=1) / np.maximum((dt_ * dt_).sum(axis=1), 1e-12)
        x = np.where(fin, dy - slope[:, None] * dt_, 0.0)
    size = 1 << int(np.ceil(np.log2(2 * h)))
    f = np.fft.rfft(x, size, axis=1)
    ac = np.fft.irfft(f * np.conj(f), size, axis=1)[:, : max_lag + 1]
    fm = np.fft.rfft(fin.astype(float), size, axis=1)
    pairs = np.fft.irfft(fm * np.conj(fm), size, axis=1)[:, : max_lag + 1]
    pairs = np.maximum(np.round(pairs), 1.0)
    var = ac[:, :1] / n[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ac / pairs) / var
    return np.where(var > 1e-300, r, 0.0)


def detect_periods(win: np.ndarray, max_period: int | None = None, hints: tuple[int, ...] = (),
                   min_period: int = 2, covered: tuple[int, ...] = ()) -> np.ndarray:
    """Per row of `win` (series × points), the period in points of its strongest significant
    cycle, 0 for none. Looks at periods from `min_period` to `max_period` (default: half the window)."""
    win = np.asarray(win, dtype=float)
    if win.ndim == 1:
        win = win[None, :]
    m, h = win.shape
    out = np.zeros(m, np.int64)
    top = h // MIN_CYCLES if max_period is None else min(int(max_period), h // MIN_CYCLES)
    if m == 0 or top < min_period or top < 2:
        return out
    fin_n = np.isfinite(win).sum(axis=1)
    rows = np.flatnonzero(fin_n >= MIN_CYCLES * min_period + 2)
    if not len(rows):
        return out
    r = autocorrelation(win[rows], top + 1)
    lags = np.arange(r.shape[1])
    # white-noise standard error; a smooth series (autocorrelation that only decays) is ruled out by
    # the trough, red noise's wandering long lags by MIN_ACF and MIN_DROP
    pairs = np.maximum(fin_n[rows][:, None] - lags[None, :], 1)
    se = 1.0 / np.sqrt(pairs)
    trough = np.minimum.accumulate(r, axis=1)
    peak = np.zeros_like(r, dtype=bool)
    peak[:, 1:-1] = (r[:, 1:-1] >= r[:, :-2]) & (r[:, 1:-1] >= r[:, 2:])
    ok = (peak & (r >= MIN_ACF) & (r >= Z_SIG * se) & (r - trough >= MIN_DROP)
          & (lags >= min_period)[None, :] & (lags <= top)[None, :])
    strength = np.where(ok, r, -np.inf)
    best = strength.argmax(axis=1)
    found = np.isfinite(strength[np.arange(len(rows)), best])
    if covered:
        # a strongest lag that divides a period the caller already models (a day
        # of hours, a week) needs no closer look: its rows are left at 0, without a loop per series
        known = np.array(sorted(set(covered)), dtype=np.int64)
        b = np.maximum(best, 1)[:, None]
        near = known[None, :] % b == 0
        found &= ~near.any(axis=1)
    for i in np.flatnonzero(found):
        p = int(best[i])
        s = strength[i, p]
        # the smallest divisor that is nearly as strong: a daily cycle also peaks at a week
        for d in range(p // min_period, 1, -1):
            q = int(round(p / d))
            lo, hi = max(min_period, q - 1), min(top, q + 1)
            if lo > hi:
                continue
            j = lo + int(np.argmax(strength[i, lo:hi + 1]))
            if np.isfinite(strength[i, j]) and strength[i, j] >= HARMONIC * s:
                p, s = j, strength[i, j]
                break
        for hint in hints:
            if hint >= min_period and abs(p - hint) <= max(1, 0.02 * hint):
                p = int(hint)
                break
        out[rows[i]] = p
    return out

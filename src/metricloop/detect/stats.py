"""Scores and bands for each noise family, and the sensitivity mapping.

Sensitivity s in [0, 10] maps to a band half-width of k(s) = 7 − 0.4·s standard deviations
(s=0 → 7, s=5 → 5, s=10 → 3), raised for sub-daily grains (see `sensitivity_to_k`). For counts
the band is the negative-binomial (or Poisson) interval with the same two-sided tail probability
as ±k standard deviations of a normal.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import special, stats

from metricloop.detect.base import COUNT, FIXED, GAUSS, Scores

BUCKETS_PER_DAY = {"minute": 1440, "hour": 24}


def points_per_day(grain: str | None = None, step: float | None = None) -> float:
    """How many times a day a series is judged: 86,400 s over its step when the step is known and
    under a day (288 at 5 minutes, 48 at 30 minutes, 12 at 2 hours), else by its grain's class
    (24 for hours, 1,440 for minutes, 1 for days and coarser)."""
    if step and 0 < step < 86400:
        return 86400.0 / step
    return float(BUCKETS_PER_DAY.get(grain or "", 1))


def sensitivity_to_k(sensitivity: float, grain: str | None = None, step: float | None = None) -> float:
    """Band half-width in sd: k = 7 − 0.4·s for daily (and coarser) series (s=5 → 5, s=10 → 3).

    Sub-daily series are judged `points_per_day` times a day (24 for hours, 288 at 5 minutes); their
    k is raised so that a series raises no more false alerts a day than a daily one at the same
    sensitivity (s=5 → 5.58 for hours, 6.0 at 5 minutes, 6.25 for minutes)."""
    s = float(np.clip(sensitivity, 0.0, 10.0))
    k = 7.0 - 0.4 * s
    per_day = points_per_day(grain, step)
    if per_day > 1:
        k = float(stats.norm.isf(stats.norm.sf(k) / per_day))
    return k


def k_to_score(k: float) -> float:
    """The score a point exactly k standard deviations away gets (the alert cut-off)."""
    return threshold_score(k)


def gauss_score(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """P(|Z| < |z|): the probability that normal noise is smaller than this deviation."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.subtract(x, mu)
        np.abs(z, out=z)
        np.divide(z, sd * np.sqrt(2.0), out=z)
    special.erf(z, out=z)
    z[np.isnan(z)] = 0.0
    return z


NB_MIN_SIZE = 10.0  # overdispersion never heavier than a gamma-Poisson whose rate varies by 32 %


def _nb_params(mu: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Negative-binomial (n, p) from mean and variance. The extra variance of a rare count is
    estimated from a handful of events: it is capped so that 6 complaints a day where 0.1 are usual
    stays a clear anomaly instead of a plausible draw from a fat tail."""
    mu = np.maximum(mu, 0.1)
    var = np.clip(var, mu * 1.0001, mu + mu * mu / NB_MIN_SIZE)
    p = mu / var
    n = mu * p / (1 - p)
    return n, p


def count_score(x: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """1 − two-sided tail probability of the count under a negative binomial (Poisson-like when
    the variance is close to the mean)."""
    out = np.zeros_like(x, dtype=float)
    ok = np.isfinite(x) & np.isfinite(mu) & np.isfinite(var)
    if not ok.any():
        return out
    xr = np.round(np.maximum(x[ok], 0))
    n, p = _nb_params(mu[ok], var[ok])
    lower_tail = stats.nbinom.cdf(xr, n, p)
    upper_tail = stats.nbinom.sf(xr - 1, n, p)
    tail = np.minimum(1.0, 2 * np.minimum(lower_tail, upper_tail))
    # a count below zero is impossible for the model: maximally anomalous
    tail = np.where(x[ok] < 0, 0.0, tail)
    out[ok] = 1.0 - tail
    return out


# ---------------------------------------------------------------------------- calibrated score
#
# A point's evidence is its log tail probability ℓ = −ln P(noise at least this far off, either side)
# under the model. `score` is a monotone transform of ℓ: exactly 1 − P while P ≥ e^−LINEAR_TO (where a
# threshold on it reads as a false-alert rate), then compressed so that it never reaches 1 and keeps
# the order of the largest deviations (1 − score ≥ e^−2·LINEAR_TO ≈ 1e-10, far above float spacing).
LINEAR_TO = 11.5  # ℓ up to here: score = 1 − e^−ℓ (P down to 1e-5)
SQUEEZE = 18.0  # beyond it ℓ is squeezed into (LINEAR_TO, LINEAR_TO + SQUEEZE): 1 − score > 1e-13
MAX_LOG_TAIL = 1e6  # a count below 0, a value infinitely far off


def tail_score(ell: np.ndarray) -> np.ndarray:
    """ℓ (−ln two-sided tail) → score in [0, 1): 1 − e^−ℓ up to LINEAR_TO, then
    LINEAR_TO + SQUEEZE·(1 − 1/(1 + ln(1 + (ℓ − LINEAR_TO)/LINEAR_TO))): strictly increasing for any
    finite ℓ, and distinct in floating point up to ℓ ≈ 1e300."""
    ell = np.clip(np.nan_to_num(np.asarray(ell, dtype=float), nan=0.0, posinf=MAX_LOG_TAIL), 0.0, None)
    a = LINEAR_TO
    with np.errstate(invalid="ignore"):
        slow = np.log1p(np.maximum(ell - a, 0.0) / a)
        squeezed = np.where(ell > a, a + SQUEEZE * (1 - 1 / (1 + slow)), ell)
    return -np.expm1(-squeezed)


def score_log_tail(score: np.ndarray) -> np.ndarray:
    """The inverse of `tail_score`: the ℓ a score stands for (inf for a score of 1)."""
    a = LINEAR_TO
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sq = -np.log1p(-np.clip(np.asarray(score, dtype=float), 0.0, 1.0))
        x = np.clip((sq - a) / SQUEEZE, 0.0, 1.0)
        slow = 1 / (1 - x) - 1
        return np.where(sq > a, a + a * np.expm1(slow), sq)


def threshold_score(k: float) -> float:
    """The score of a point exactly k normal sd off: the alert threshold of half-width k."""
    return float(tail_score(np.array(-(np.log(2.0) + special.log_ndtr(-abs(k))))))


def gauss_log_tail(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.abs(np.subtract(x, mu)) / sd
        ell = -(np.log(2.0) + special.log_ndtr(-z))
    return np.where(np.isfinite(ell), np.maximum(ell, 0.0), np.where(np.isnan(z), 0.0, MAX_LOG_TAIL))


def count_log_tail(x: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    out = np.zeros(np.shape(x), dtype=float)
    ok = np.isfinite(x) & np.isfinite(mu) & np.isfinite(var)
    if not ok.any():
        return out
    xr = np.round(np.maximum(x[ok], 0))
    n, p = _nb_params(mu[ok], var[ok])
    with np.errstate(divide="ignore", invalid="ignore"):
        lt = np.minimum(stats.nbinom.logcdf(xr, n, p), stats.nbinom.logsf(xr - 1, n, p))
        ell = -np.minimum(0.0, np.log(2.0) + lt)
    ell = np.where(np.isfinite(ell), ell, MAX_LOG_TAIL)
    out[ok] = np.where(x[ok] < 0, MAX_LOG_TAIL, ell)  # a count below zero is impossible for the model
    return out


def log_tail_points(values: np.ndarray, expected: np.ndarray, scale: np.ndarray, family: np.ndarray,
                    unit: np.ndarray | None = None) -> np.ndarray:
    """ℓ per point (0 where the value or the model is missing); `unit` as in `score_points`."""
    fam = np.asarray(family)
    g = fam == GAUSS
    if g.all():
        return gauss_log_tail(values, expected, scale)
    ell = np.zeros_like(values, dtype=float)
    if g.any():
        ell[g] = gauss_log_tail(values[g], expected[g], scale[g])
    c = fam == COUNT
    if c.any():
        u = np.ones((c.sum(), 1)) if unit is None else np.asarray(unit, dtype=float)[c]
        ell[c] = count_log_tail(values[c] / u, expected[c] / u, scale[c] / (u * u))
    return ell


def score_points(values: np.ndarray, expected: np.ndarray, scale: np.ndarray, family: np.ndarray,
                 unit: np.ndarray | None = None) -> np.ndarray:
    """Score per point (`tail_score` of the model's log tail); `unit` (series × time) is the lump size
    of a COUNT series that is a sum (GMV counted in baskets of about that size): it is scored as
    value/unit lumps."""
    return tail_score(log_tail_points(values, expected, scale, family, unit))


CAL_U = float(np.log(10.0))  # calibration: exceedances of a tail of 10 %
CAL_PRIOR_POINTS = 1000.0  # the prior (a calibrated model) is worth this many points …
CAL_PRIOR_EXCESS = 100.0  # … and this many exceedances
CAL_XI_SE = 3.0  # a tail shape is used only as far as it is this many standard errors beyond 0
CAL_XI = np.linspace(0.0, 4.0, 17)  # tail shapes looked at: 0 = exponential (a calibrated model) … 4
CAL_LOG_SIGMA = np.linspace(np.log(0.05), np.log(1e5), 80)  # tail scales looked at


def _gpd_log_moments() -> tuple[np.ndarray, np.ndarray]:
    """E[ln(1 + e)] and E[ln(1 + e)²] of a generalised Pareto excess e with shape ξ (rows, `CAL_XI`) and
    scale σ (columns, `CAL_LOG_SIGMA`), by Gauss-Laguerre quadrature over e's exponential quantile s
    (e = σ·(e^{ξs} − 1)/ξ, in logs so that no tail overflows)."""
    from numpy.polynomial.laguerre import laggauss

    s, w = laggauss(80)
    xi = CAL_XI[:, None, None]
    ls = CAL_LOG_SIGMA[None, :, None]
    s = s[None, None, :]
    safe = np.where(xi > 0, xi, 1.0)
    xs = xi * s
    with np.errstate(divide="ignore"):
        log_e = np.where(xi > 0, ls + xs + np.log(-np.expm1(-np.maximum(xs, 1e-300))) - np.log(safe), ls + np.log(s))
    g = np.logaddexp(0.0, log_e)
    return (g * w).sum(-1), (g * g * w).sum(-1)


_CAL_H1, _CAL_H2 = _gpd_log_moments()
_CAL_PRIOR_H1, _CAL_PRIOR_H2 = (float(np.interp(0.0, CAL_LOG_SIGMA, h[0])) for h in (_CAL_H1, _CAL_H2))


def gpd_from_log_moments(h1: np.ndarray, h2: np.ndarray, n: np.ndarray | float | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The generalised Pareto (ξ ≥ 0, σ) whose excesses have these mean log and mean squared log
    (E[ln(1 + e)], E[ln(1 + e)²]): a giant anomaly moves them by its logarithm only, so they can be
    learnt from a past that holds anomalies. At a given mean log, a heavier tail has the larger
    second moment: ξ is read off that, σ from the mean log at that ξ. With `n` (the excesses behind
    the moments) ξ is first lowered by `CAL_XI_SE` standard errors, (1 + ξ)/√n each, and floored at 0: a shape
    the data cannot tell from the exponential stays exponential, so noise in the estimate does not
    compress the largest deviations."""
    h1 = np.asarray(h1, float)
    h2 = np.asarray(h2, float)
    lsig = np.array([np.interp(h1, _CAL_H1[i], CAL_LOG_SIGMA) for i in range(len(CAL_XI))])
    m2 = np.array([np.interp(lsig[i], CAL_LOG_SIGMA, _CAL_H2[i]) for i in range(len(CAL_XI))])
    above = (m2 < h2[None]).sum(axis=0)  # m2 grows with ξ: the shapes whose second moment is too small
    hi = np.clip(above, 1, len(CAL_XI) - 1)
    lo = hi - 1
    cols = np.arange(h1.size).reshape(h1.shape)
    m_lo, m_hi = m2[lo, cols], m2[hi, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.clip((h2 - m_lo) / (m_hi - m_lo), 0.0, 1.0)
    f = np.where(np.isfinite(f), f, 0.0)
    xi = CAL_XI[lo] + f * (CAL_XI[hi] - CAL_XI[lo])
    if n is not None:
        xi = np.maximum(xi - CAL_XI_SE * (1.0 + xi) / np.sqrt(np.maximum(n, 1.0)), 0.0)
        step = CAL_XI[1] - CAL_XI[0]
        lo = np.minimum((xi / step).astype(np.int64), len(CAL_XI) - 2)
        hi = lo + 1
        f = np.clip(xi / step - lo, 0.0, 1.0)
    sig = np.exp(lsig[lo, cols] + f * (lsig[hi, cols] - lsig[lo, cols]))
    return xi, sig


def gpd_log_sf(e: np.ndarray, xi: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """−ln P(excess > e) of a generalised Pareto (ξ ≥ 0): ln(1 + ξe/σ)/ξ, e/σ at ξ = 0."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = e / sig
        return np.where(xi > 1e-6, np.log1p(xi * r) / np.where(xi > 1e-6, xi, 1.0), r)


def gpd_log_isf(y: np.ndarray, xi: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """The excess whose −ln P is y (the inverse of `gpd_log_sf`)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(xi > 1e-6, sig * np.expm1(np.minimum(xi * y, 700.0)) / np.where(xi > 1e-6, xi, 1.0), sig * y)


CAL_ALARM = LINEAR_TO  # beyond this calibrated ℓ (a tail of 1e-5) a point is an anomaly, not the noise's tail


def calibrate_log_tail(ell: np.ndarray, usable: np.ndarray, alarm: float = CAL_ALARM) -> np.ndarray:
    """The model's ℓ recalibrated on the series' own past (causal: each point from the points before
    it), peaks over a threshold as SPOT does. Under a calibrated model ℓ is exponential with mean 1: a
    tail of 10 % is passed by 10 % of points, and beyond it ℓ − ln 10 is again exponential with mean 1.
    A series whose noise is heavier (or lighter) than its model shows it in how often and how far its
    points pass that tail: the fraction q that passed is learnt (shrunk to 0.1 by a prior), and the
    excesses beyond it are fitted with a generalised Pareto tail (shape ξ ≥ 0, scale σ; shrunk to the
    calibrated ξ = 0, σ = 1 by a prior worth `CAL_PRIOR_EXCESS` exceedances) from their log moments.
    ℓ becomes ln(1/q)·ℓ/ln 10 below the threshold and ln(1/q) − ln P_GPD(ℓ − ln 10) beyond: a series
    whose model is calibrated keeps its ℓ, one whose errors are heavy-tailed (a CPU that jumps by whole
    steps, spiky traffic) has its largest deviations judged against its own largest past ones, not
    against a Gaussian. As in SPOT, an anomaly is not the noise's tail: a point beyond `alarm` (a tail of
    1e-5 by default) under the fit so far enters the fit only as
    far as that level (censored), so a few incidents do not
    teach a calibrated series that huge deviations are common, while a heavy tail, passed again and
    again, still raises the fit step by step. Monotone in ℓ at every point."""
    ell = np.asarray(ell, dtype=float)
    shape = ell.shape
    ell2 = ell.reshape(-1, shape[-1]) if ell.ndim != 2 else ell
    use = (np.broadcast_to(usable, shape).reshape(ell2.shape)) & np.isfinite(ell2)
    exc = use & (ell2 > CAL_U)

    def before(a: np.ndarray) -> np.ndarray:
        c = np.cumsum(a, axis=-1, dtype=float)
        out = np.zeros_like(c)
        out[..., 1:] = c[..., :-1]
        return out

    n = before(use)
    ne = before(exc)
    q = (ne + 0.1 * CAL_PRIOR_POINTS) / (n + CAL_PRIOR_POINTS)
    lq = -np.log(q)
    del n, ne, q
    with np.errstate(invalid="ignore"):
        out = np.where(ell2 <= CAL_U, ell2 * lq / CAL_U, ell2)
    # the tail: a walk over the points that pass the threshold, the fit of each series updated after each
    at = np.isfinite(ell2) & (ell2 > CAL_U)
    m = ell2.shape[0]
    k = np.zeros(m)
    s1 = np.zeros(m)
    s2 = np.zeros(m)
    for t in np.flatnonzero(at.any(axis=0)):
        rows = np.flatnonzero(at[:, t])
        w = k[rows] + CAL_PRIOR_EXCESS
        xi, sig = gpd_from_log_moments((s1[rows] + CAL_PRIOR_EXCESS * _CAL_PRIOR_H1) / w,
                                       (s2[rows] + CAL_PRIOR_EXCESS * _CAL_PRIOR_H2) / w, w)
        e = ell2[rows, t] - CAL_U
        out[rows, t] = lq[rows, t] + gpd_log_sf(e, xi, sig)
        learn = exc[rows, t]
        if learn.any():
            r = rows[learn]
            cap = gpd_log_isf(np.maximum(alarm - lq[r, t], 0.0), xi[learn], sig[learn])
            g = np.log1p(np.minimum(e[learn], cap))
            k[r] += 1
            s1[r] += g
            s2[r] += g * g
    out = np.where(np.isfinite(ell2), out, ell2)
    return out.reshape(shape)


def band(scores: Scores, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edge of the normal range at half-width k (series × time)."""
    lower = np.full(scores.values.shape, np.nan)
    upper = np.full(scores.values.shape, np.nan)
    fam = np.asarray(scores.family)
    g = fam == GAUSS
    if g.all():
        width = k * scores.scale
        return _clamp(scores, scores.expected - width, scores.expected + width)
    if g.any():
        lower[g] = scores.expected[g] - k * scores.scale[g]
        upper[g] = scores.expected[g] + k * scores.scale[g]
    c = fam == COUNT
    if c.any():
        u = np.ones((c.sum(), 1)) if scores.unit is None else np.asarray(scores.unit, dtype=float)[c]
        u = np.broadcast_to(u, scores.expected[c].shape)
        lo, hi = count_interval(scores.expected[c] / u, scores.scale[c] / (u * u), k)
        lower[c], upper[c] = lo * u, hi * u
    f = fam == FIXED
    if f.any() and scores.fixed_lower is not None and scores.fixed_upper is not None:
        lower[f] = scores.fixed_lower[f]
        upper[f] = scores.fixed_upper[f]
    return _clamp(scores, lower, upper)


def count_interval(mu: np.ndarray, var: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """The negative-binomial (Poisson-like) interval with the two-sided tail of ±k normal sd; NaN
    where the mean or the variance is not known."""
    tail = float(special.erfc(k / np.sqrt(2.0))) / 2  # one-sided tail of ±k
    ok = np.isfinite(mu) & np.isfinite(var)
    lo = np.full(np.shape(mu), np.nan)
    hi = np.full(np.shape(mu), np.nan)
    # a count of millions is as good as normal, and the exact quantile search there takes seconds a point
    big = ok & (np.nan_to_num(mu) > BIG_COUNT)
    ok &= ~big
    if ok.any():
        n, p = _nb_params(mu[ok], var[ok])
        lo[ok] = stats.nbinom.ppf(tail, n, p)
        hi[ok] = stats.nbinom.ppf(1 - tail, n, p)
    if big.any():
        sd = np.sqrt(np.clip(var[big], mu[big], mu[big] + mu[big] ** 2 / NB_MIN_SIZE))
        lo[big], hi[big] = np.floor(mu[big] - k * sd), np.ceil(mu[big] + k * sd)
    return lo, hi


BIG_COUNT = 1e5


def clamp(lower: np.ndarray, upper: np.ndarray, floor: np.ndarray | None,
          ceiling: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A band never claims values the metric cannot take (a rate above 100 %, a negative count);
    `floor` and `ceiling` broadcast against the band."""
    if floor is not None:
        lower = np.maximum(lower, floor)
    if ceiling is not None:
        upper = np.minimum(upper, ceiling)
    return lower, upper


def _clamp(scores: Scores, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`clamp` with the series' own floor and ceiling (series × time)."""
    return clamp(lower, upper, None if scores.floor is None else scores.floor[:, None],
                 None if scores.ceiling is None else scores.ceiling[:, None])


ROUTINE_DAYS = 7  # past days looked at for a routine excursion at the same time of day
ROUTINE_SEEN = 3  # … of which at least this many must have had it (a routine is most days, not a repeat)
ROUTINE_SPREAD = 0.2  # a routine excursion's size varies by about this fraction of it from day to day


def routine_log_tail(ell: np.ndarray, usable: np.ndarray, per_day: int, jitter: int) -> np.ndarray:
    """ℓ less what the same time of day has shown on recent days: a nightly job that lifts a CPU to
    1.4 at 03:00–04:00 every day, a dispatch wave that hits at a different 5-minute slot each
    evening, is the series' routine, not news, although no fixed slot of a profile holds it. For each
    point, the largest ℓ within ±`jitter` points of the same time of day on each of the last
    `ROUTINE_DAYS` days is taken; the `ROUTINE_SEEN`-th largest of those (what at least that many
    recent days reached; 0 where fewer were seen) is the routine r, less what calibrated noise
    reaches there anyway (the level that many days' largest of 2·jitter + 1 calibrated points pass
    with a chance of 1 %), both as deviations z = √(2ℓ): the routine moves the expectation by its
    z_r, and its own size varies from day to day (by `ROUTINE_SPREAD` of it), so z becomes
    (z − z_r)/(1 + ROUTINE_SPREAD·z_r) (0 below it; a job that takes twice its usual CPU is still
    news). Monotone in ℓ at every point, and unchanged where the past days held no such excursion.
    Causal: only days before."""
    from scipy.ndimage import maximum_filter1d

    ell = np.asarray(ell, dtype=float)
    if per_day < 2 or ell.shape[-1] <= per_day * ROUTINE_SEEN:
        return ell
    shape = ell.shape
    e2 = ell.reshape(-1, shape[-1])
    use = np.broadcast_to(usable, shape).reshape(e2.shape) & np.isfinite(e2)
    T = e2.shape[1]
    width = 2 * jitter + 1
    base = _routine_base(width)
    out = e2.copy()
    days = min(ROUTINE_DAYS, (T - 1) // per_day)
    for lo in range(0, e2.shape[0], 256):  # rows in chunks: memory stays ~ 256 × T × days
        # single precision is plenty for a routine's size, and halves the memory the 7 days take
        blk = np.where(use[lo:lo + 256], e2[lo:lo + 256], 0.0).astype(np.float32)
        wmax = maximum_filter1d(blk, size=width, axis=1, mode="constant", cval=0.0)
        past = np.zeros((days, blk.shape[0], T), np.float32)
        for d in range(1, days + 1):
            past[d - 1, :, d * per_day:] = wmax[:, :T - d * per_day]
        past *= -1
        past.partition(ROUTINE_SEEN - 1, axis=0)
        r = -past[ROUTINE_SEEN - 1].astype(float)
        # in deviations (z ≈ √(2ℓ)): the routine moves the expectation by its z, less what noise reaches
        rz = np.maximum(np.sqrt(2.0 * r) - np.sqrt(2.0 * base), 0.0)
        x = e2[lo:lo + 256]
        with np.errstate(invalid="ignore"):
            z = np.sqrt(2.0 * np.maximum(x, 0.0))
            zr = np.maximum(z - rz, 0.0) / (1.0 + ROUTINE_SPREAD * rz)
            out[lo:lo + 256] = np.where(np.isfinite(x) & (rz > 0), 0.5 * zr**2, x)
    return out.reshape(shape)


@functools.lru_cache(maxsize=64)
def _routine_base(width: int, chance: float = 0.01) -> float:
    """The ℓ that the `ROUTINE_SEEN`-th largest of `ROUTINE_DAYS` days' maxima of `width` calibrated
    points (ℓ exponential with mean 1) passes with probability `chance`."""
    from scipy.optimize import brentq

    def excess(x: float) -> float:
        p_day = 1.0 - (1.0 - np.exp(-x)) ** width
        return float(stats.binom.sf(ROUTINE_SEEN - 1, ROUTINE_DAYS, p_day)) - chance

    return float(brentq(excess, 1e-6, 60.0))


HISTORY_DAYS = 28  # the long view: a sub-hourly series' value against its own past four weeks


def history_log_tail(values: np.ndarray, seen: np.ndarray, span: int, min_points: int,
                     min_sd: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The long view: ℓ of each value against the mean and sd of the series' own past values (those
    `seen` marks; causal: each point from the points before it), weighted max(1/n, 1/span) so that the first `span`
    points count equally and older ones then fade. It sees what a one-step forecast cannot: a level
    that slid, hour after hour, far from anything the series did before (a machine's temperature
    falling from 85 to 20 in a day: every step was small, so the forecast followed it). Returns
    (ℓ, mean, sd): ℓ is 0 and the mean NaN before `min_points` such points. `min_sd` (per series) is a
    floor on the sd: the value's resolution, as for the forecast's noise."""
    x = np.ascontiguousarray(np.asarray(values, dtype=float).T)
    T, m = x.shape
    use = np.ascontiguousarray((np.asarray(seen, bool) & np.isfinite(np.asarray(values, dtype=float))).T)
    mu = np.zeros(m)
    var = np.zeros(m)
    n = np.zeros(m)
    mean_t = np.full((T, m), np.nan)
    sd_t = np.full((T, m), np.nan)
    floor = 1.0 / span
    for t in range(T):
        ok = n >= min_points
        if ok.any():
            mean_t[t] = np.where(ok, mu, np.nan)
            sd_t[t] = np.where(ok, np.sqrt(var), np.nan)
        u = use[t]
        if not u.any():
            continue
        n += u
        w = np.where(u, np.maximum(1.0 / np.maximum(n, 1.0), floor), 0.0)
        d = np.where(u, x[t] - mu, 0.0)
        mu += w * d
        var = (1 - w) * (var + w * d * d)
    mean_t, sd_t = mean_t.T, sd_t.T
    with np.errstate(invalid="ignore"):
        if min_sd is not None:
            sd_t = np.maximum(sd_t, np.asarray(min_sd, dtype=float)[:, None])
        sd_t = np.where(sd_t > 0, sd_t, np.nan)
    # (ℓ is 0 where the mean or sd is NaN: before `min_points`, or a history that never moved)
    return gauss_log_tail(np.asarray(values, dtype=float), mean_t, sd_t), mean_t, sd_t

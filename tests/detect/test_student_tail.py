"""The Gaussian family's tail is Student-t (its scale is an estimate worth `SCALE_DOF` points): the
log tail, its inverse and the thresholds agree with scipy and keep the order of any deviation."""

import numpy as np
import pandas as pd
from scipy import stats as sps

from metricloop.detect import get_detector
from metricloop.detect.stats import (
    SCALE_DOF,
    normal_deviate,
    student_deviate,
    student_log_tail,
    tail_score,
    threshold_score,
)


def test_student_log_tail_matches_scipy_and_keeps_order_far_out():
    z = np.array([0.0, 0.5, 1.0, 3.0, 5.0, 8.0, 20.0, 60.0])
    want = -np.log(2 * sps.t.sf(z, SCALE_DOF))
    np.testing.assert_allclose(student_log_tail(z, SCALE_DOF), want, rtol=1e-6, atol=1e-6)
    # normal at dof = inf, per series when dof is an array
    np.testing.assert_allclose(student_log_tail(z, np.inf), -(np.log(2) + sps.norm.logsf(z)), rtol=1e-9, atol=1e-12)
    mixed = student_log_tail(np.vstack([z, z]), np.array([[SCALE_DOF], [np.inf]]))
    np.testing.assert_allclose(mixed[0], want, rtol=1e-6, atol=1e-6)
    # beyond what a float tail holds (z of 1e9 …): still finite, increasing, and invertible
    far = np.array([1e3, 1e6, 1e9, 1e12, 1e100])
    ell = student_log_tail(far, SCALE_DOF)
    assert np.isfinite(ell).all() and (np.diff(ell) > 0).all()
    np.testing.assert_allclose(student_deviate(ell, SCALE_DOF), far, rtol=1e-6)
    np.testing.assert_allclose(student_deviate(want[1:], SCALE_DOF), z[1:], rtol=1e-6)
    sweep = np.sort(np.abs(np.random.default_rng(0).standard_cauchy(200_000)) * 30)
    assert (np.diff(student_log_tail(sweep, SCALE_DOF)) >= 0).all()
    assert np.isnan(student_log_tail(np.array([np.nan]), SCALE_DOF)).all()


def test_thresholds_mean_k_sd_under_each_family():
    k = 5.0
    # a Gaussian point k sd off scores exactly the Gaussian threshold; a count's threshold stays normal
    assert threshold_score(k, SCALE_DOF) == float(tail_score(student_log_tail(np.array(k), SCALE_DOF)))
    assert threshold_score(k, SCALE_DOF) < threshold_score(k)
    assert normal_deviate(k) == k or abs(normal_deviate(k) - k) < 1e-9
    assert 4.0 < normal_deviate(k, SCALE_DOF) < k


def test_a_gaussian_point_at_the_band_edge_is_at_the_threshold():
    """The band is expected ± k·sd; a value just outside it alerts and one just inside does not."""
    rng = np.random.default_rng(4)
    times = pd.date_range("2025-01-01", periods=120, freq="D")
    v = 1000 * (1 + 0.02 * rng.standard_normal(120))
    det = get_detector("auto")
    d = det.detect(v, times)
    t = 100
    assert d.scores.dof is not None and d.scores.dof[0] == SCALE_DOF
    for inside, factor in ((False, 1.01), (True, 0.99)):
        w = v.copy()
        w[t] = d.expected[0, t] + factor * (d.upper[0, t] - d.expected[0, t])
        got = det.detect(w, times)
        # the same causal model up to t: the band there does not move with the value at t
        assert got.upper[0, t] == d.upper[0, t]
        assert bool(got.is_anomaly[0, t]) is (not inside), (factor, got.scores.score[0, t])

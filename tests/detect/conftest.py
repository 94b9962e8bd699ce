import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def daily():
    """Two years of a daily business series with a weekly pattern, a trend and 3 % noise (5 series)."""
    rng = np.random.default_rng(7)
    times = pd.date_range("2024-01-01", periods=420, freq="D")
    dow = np.array([1.0, 1.0, 1.05, 1.1, 1.2, 0.8, 0.85])[times.day_of_week]
    base = 1000 * (1 + 0.0005 * np.arange(len(times))) * dow
    values = base * (1 + 0.03 * rng.standard_normal((5, len(times))))
    return times, values, base

"""docs/detectors.md stays true to the code: every detector and every option is documented."""

from pathlib import Path

import pytest

from metricloop.detect import detector_names
from metricloop.detect.base import _REGISTRY, _load_builtins
from metricloop.detect.csvio import OUTPUT_COLUMNS

DOC = (Path(__file__).parents[2] / "docs" / "detectors.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", detector_names())
def test_every_detector_and_option_is_documented(name):
    _load_builtins()
    assert f"`{name}`" in DOC
    for field in _REGISTRY[name].config_class.model_fields:
        assert f"`{field}`" in DOC, f"{name}.{field} is not documented in docs/detectors.md"


def test_csv_columns_and_behaviours_are_documented():
    assert ",".join(OUTPUT_COLUMNS) in DOC
    for word in ("exclude", "suppress", "compare", "unsorted", "duplicate", "gaps", "irregular"):
        assert word in DOC

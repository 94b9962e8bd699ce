"""`metricloop detect` over CSV files: shapes, bad input, folder mode."""

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from metricloop import cli_detect
from metricloop.detect.csvio import OUTPUT_COLUMNS, detect_csv
from metricloop.errors import MetricloopError


def _write(tmp_path, name, frame):
    p = tmp_path / name
    frame.to_csv(p, index=False)
    return p


def _series(n=120, spike=100):
    rng = np.random.default_rng(1)
    t = pd.date_range("2025-01-01", periods=n, freq="D")
    v = 1000 + 20 * rng.standard_normal(n)
    if spike is not None:
        v[spike] = 400
    return pd.DataFrame({"date": t.strftime("%Y-%m-%d"), "sales": v.round(2), "note": "x"})


def test_one_row_per_input_row_in_input_order(tmp_path):
    df = _series().sample(frac=1, random_state=3)
    res = detect_csv(_write(tmp_path, "a.csv", df))
    out = res.frame
    assert list(out.columns) == OUTPUT_COLUMNS and len(out) == len(df)
    assert out["timestamp"].tolist() == df["date"].tolist()
    assert res.time_col == "date" and res.value_col == "sales"
    assert out["score"].between(0, 1).all()
    assert out.loc[out["timestamp"] == "2025-04-11", "is_anomaly"].item()
    assert any("not sorted" in w for w in res.warnings)


def test_duplicates_gaps_nan_and_irregular_times(tmp_path):
    df = _series()
    df = pd.concat([df, df.iloc[[50]]], ignore_index=True)  # duplicate timestamp
    df = df.drop(index=range(60, 65))  # gap
    df.loc[70, "sales"] = np.nan
    res = detect_csv(_write(tmp_path, "b.csv", df))
    assert len(res.frame) == len(df)
    text = " ".join(res.warnings)
    assert "share a timestamp" in text and "gaps" in text and "empty value" in text
    assert not res.frame.loc[res.frame["value"].isna(), "is_anomaly"].any()
    t = pd.date_range("2025-01-01", periods=300, freq="D") + pd.to_timedelta(np.arange(300) % 5, unit="h")
    irr = pd.DataFrame({"ts": t.astype(str), "v": np.ones(300)})
    res = detect_csv(_write(tmp_path, "c.csv", irr))
    assert len(res.frame) == 300 and any("irregular" in w for w in res.warnings)


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "empty"),
        ("date,value\n", "no rows"),
        ("date,value\nnot a date,1\nnope,2\n", "no timestamp"),
        ("date,name\n2025-01-01,a\n2025-01-02,b\n", "no numeric column"),
    ],
    ids=["empty file", "header only", "unparseable timestamps", "no numeric column"],
)
def test_bad_files_get_a_clear_message(tmp_path, content, match):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(MetricloopError, match=match):
        detect_csv(p)


@pytest.mark.parametrize("case", ["constant", "all_nan", "single", "huge", "negative_counts", "some_bad_times"])
def test_odd_series_give_a_documented_result(tmp_path, case):
    n = 90
    t = pd.date_range("2025-01-01", periods=n, freq="D").strftime("%Y-%m-%d").tolist()
    v = np.full(n, 5.0)
    if case == "all_nan":
        v[:] = np.nan
    elif case == "huge":
        v = 1e300 * (1 + 0.01 * np.random.default_rng(0).standard_normal(n))
        v[80] = 1.7e308
    elif case == "negative_counts":
        v = np.random.default_rng(0).poisson(5, n).astype(float)
        v[80] = -40
    elif case == "single":
        t, v = t[:1], v[:1]
    elif case == "some_bad_times":
        t[10] = "garbage"
    res = detect_csv(_write(tmp_path, "x.csv", pd.DataFrame({"date": t, "value": v})))
    out = res.frame
    assert len(out) == len(v) and out["score"].between(0, 1).all()
    if case == "constant":
        assert not out["is_anomaly"].any() and np.allclose(out["expected"].dropna(), 5.0)
    if case in ("all_nan", "single"):
        assert not out["is_anomaly"].any() and out["expected"].isna().all()
    if case == "negative_counts":
        assert out["is_anomaly"].iloc[80]
    if case == "huge":
        assert np.isfinite(out["expected"].iloc[40])
    if case == "some_bad_times":
        assert np.isnan(out["expected"].iloc[10]) and any("unparseable" in w for w in res.warnings)


def _app():
    app = typer.Typer()
    cli_detect.register(app)
    return app


def test_cli_file_and_folder_modes(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    _series().to_csv(src / "one.csv", index=False)
    _series(60, None).to_csv(src / "sub" / "two.csv", index=False)
    runner = CliRunner()
    r = runner.invoke(_app(), ["detect", str(src / "one.csv"), "--output", str(tmp_path / "o.csv"),
                               "--sensitivity", "6"])
    assert r.exit_code == 0, r.output
    assert pd.read_csv(tmp_path / "o.csv").columns.tolist() == OUTPUT_COLUMNS
    r = runner.invoke(_app(), ["detect", str(src), "--output", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "one.csv").exists() and (tmp_path / "out" / "sub" / "two.csv").exists()
    r = runner.invoke(_app(), ["detect", str(src / "one.csv"), "-o", str(tmp_path / "t.csv"), "--detector",
                               "threshold", "--set", "lower=900", "--value-col", "sales", "--time-col", "date"])
    assert r.exit_code == 0, r.output
    assert pd.read_csv(tmp_path / "t.csv")["is_anomaly"].sum() == 1
    (src / "bad.csv").write_text("a,b\nx,y\n")
    r = runner.invoke(_app(), ["detect", str(src), "--output", str(tmp_path / "out2")])
    assert r.exit_code == 1 and "bad.csv" in r.output


def test_cli_user_errors_are_metricloop_errors(tmp_path):
    r = CliRunner().invoke(_app(), ["detect", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "o.csv")])
    assert isinstance(r.exception, MetricloopError) and "no such file" in str(r.exception)
    r = CliRunner().invoke(_app(), ["detect", str(tmp_path), "-o", "x.csv", "--detector", "nope"])
    assert isinstance(r.exception, MetricloopError)

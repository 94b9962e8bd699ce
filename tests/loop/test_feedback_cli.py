"""`metricloop feedback` and `metricloop quality` on a real workspace (SQLite and PostgreSQL state)."""

from __future__ import annotations

import json

import pytest
from loop_helpers import incidents, timeline
from test_cli_loop import cli as cli  # the fixture: the shop with one incident, the CLI as wang.fang


def test_feedback_give_list_and_quality(cli):
    (inc,) = incidents(cli.ws)
    code, out = cli("feedback", "give", "false-alarm", "--incident", str(inc.id), "--note", "stocktake")
    assert code == 0, out
    assert "false_alarm on alert #" in out and "供调优" in out  # the workspace speaks zh
    code, out = cli("feedback", "give", "confirmed", "--incident", str(inc.id), "--as", "li.lei@shop.test")
    assert code == 0 and "replaces wang.fang@shop.test's false_alarm" in out
    code, out = cli(
        "feedback",
        "give",
        "missed",
        "--monitor",
        "shop_sales",
        "--slice",
        "store=BJ-1,region=North",
        "--start",
        "2026-11-03",
        "--end",
        "2026-11-04",
    )
    assert code == 0 and "[region=North,store=BJ-1]" in out
    code, out = cli("feedback", "list", "--format", "json")
    assert [x["label"] for x in json.loads(out)] == ["missed", "confirmed"]
    code, out = cli("feedback", "list", "--all", "--format", "json")
    assert [x["label"] for x in json.loads(out)] == ["missed", "confirmed", "false_alarm"]
    kinds = [e.kind for e in timeline(cli.ws, inc.id)]
    assert kinds.count("feedback") == 2
    code, out = cli("quality", "--format", "json")
    assert code == 0, out
    (row,) = json.loads(out)["rows"]
    assert row["monitor"] == "shop_sales" and row["precision"] == 1.0 and row["missed"] == 1
    code, out = cli("quality", "--by", "owner")
    assert code == 0 and "sales.owner@shop.test" in out and "100%" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("feedback", "give", "great", "--alert", "1"), "unknown label 'great'"),
        (("feedback", "give", "confirmed", "--alert", "424242"), "no alert #424242"),
        (("feedback", "give", "confirmed", "--incident", "424242"), "no incident #424242"),
        (("feedback", "give", "expected", "--alert", "1", "--cause", "rain"), "unknown cause 'rain'"),
        (("feedback", "give", "new_normal", "--monitor", "shop_sales", "--since", "2099-01-01"), "in the future"),
        (("feedback", "give", "missed", "--monitor", "shop_sales", "--start", "soon"), "not a date"),
        (("quality", "--by", "colour"), "cannot group by 'colour'"),
    ],
)
def test_bad_feedback_commands_say_what_and_where(cli, args, words):
    code, out = cli(*args)
    assert code == 2 and words in out, out
    code, out = cli("feedback", "list", "--all", "--format", "json")
    assert json.loads(out) == []

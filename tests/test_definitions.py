"""Definitions are versioned rows: apply, export, history, rollback, all-or-nothing — on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import yaml

from metricloop.definitions import service
from metricloop.errors import DefinitionError, NotFound


@pytest.fixture
def applied(ws, helpers, data_files):
    """The shop source and metrics applied once by `tester`."""
    helpers.apply_text(ws, helpers.defs_yaml([helpers.duckdb_source(data_files)], helpers.shop_metrics()))
    return ws


def gmv_with(helpers, **changes) -> str:
    metric = next(m for m in helpers.shop_metrics() if m["name"] == "gmv")
    return helpers.defs_yaml(metrics=[{**metric, **changes}])


def test_apply_creates_version_1(ws, helpers, data_files):
    result = helpers.apply_text(ws, helpers.defs_yaml([helpers.duckdb_source(data_files)], helpers.shop_metrics()))
    assert ("source", "shop", 1) in result.created
    assert ("metric", "gmv", 1) in result.created
    assert len(result.created) == 1 + len(helpers.shop_metrics())
    assert result.updated == [] and result.unchanged == []
    with ws.db.session() as s:
        (v1,) = service.history(s, kind="metric", name="gmv")
    assert (v1.version, v1.change, v1.author) == (1, "create", "tester")
    assert v1.created_at is not None
    assert "+owner: ana@example.com" in v1.diff
    catalog = ws.catalog()
    assert catalog.metric("gmv").measure.column == "amount"
    assert catalog.source("shop").type == "duckdb"


def test_change_makes_version_2_with_author_time_and_diff(applied, helpers):
    with applied.db.session() as s:
        (v1,) = service.history(s, kind="metric", name="gmv")
    result = helpers.apply_text(applied, gmv_with(helpers, owner="bo@example.com"), file="gmv.yaml", author="bo")
    assert result.updated == [("metric", "gmv", 2)]
    assert result.created == []
    with applied.db.session() as s:
        versions = service.history(s, kind="metric", name="gmv")
    assert [v.version for v in versions] == [1, 2]
    v2 = versions[1]
    assert (v2.change, v2.author) == ("update", "bo")
    assert v2.created_at >= v1.created_at
    assert "-owner: ana@example.com" in v2.diff
    assert "+owner: bo@example.com" in v2.diff
    assert "measure" not in v2.diff  # only what changed
    assert applied.catalog().metric("gmv").owner == "bo@example.com"


def test_apply_export_apply_is_a_no_op(applied, helpers):
    with applied.db.session() as s:
        exported = service.dump_yaml(service.export(s))
    before = helpers.db_state(applied)
    result = helpers.apply_text(applied, exported, file="exported.yaml")
    assert (len(result.created), len(result.updated)) == (0, 0)
    assert len(result.unchanged) == 1 + len(helpers.shop_metrics())
    assert helpers.db_state(applied) == before
    # and the export reads back as the same document
    doc = yaml.safe_load(exported)
    assert [m["name"] for m in doc["metrics"]] == sorted(m["name"] for m in helpers.shop_metrics())
    assert doc["sources"][0]["name"] == "shop"


def test_export_one_kind(applied):
    with applied.db.session() as s:
        assert set(service.export(s, ["metric"])) == {"metrics"}
        assert set(service.export(s, ["sources"])) == {"sources"}


def test_history_lists_every_version_in_order(applied, helpers):
    for owner in ("b@example.com", "c@example.com"):
        helpers.apply_text(applied, gmv_with(helpers, owner=owner), file="gmv.yaml")
    with applied.db.session() as s:
        versions = service.history(s, kind="metrics", name="gmv")
        assert [(v.version, v.change) for v in versions] == [(1, "create"), (2, "update"), (3, "update")]
        with pytest.raises(NotFound, match="no history for metric 'nope'"):
            service.history(s, kind="metric", name="nope")
        with pytest.raises(NotFound, match="unknown kind 'monitorz'"):
            service.history(s, kind="monitorz", name="gmv")


def test_rollback_restores_a_version_as_a_new_version(applied, helpers):
    helpers.apply_text(applied, gmv_with(helpers, owner="b@example.com", tier="core"), file="gmv.yaml")
    with applied.db.session() as s:
        v1_spec = service.history(s, kind="metric", name="gmv")[0].spec
        new = service.rollback(s, kind="metric", name="gmv", version=1, author="carol")
    assert new == 3
    metric = applied.catalog().metric("gmv")
    assert (metric.owner, metric.tier) == ("ana@example.com", "normal")
    with applied.db.session() as s:
        versions = service.history(s, kind="metric", name="gmv")
        assert [v.change for v in versions] == ["create", "update", "rollback"]
        v3 = versions[-1]
        assert (v3.author, v3.comment, v3.spec) == ("carol", "rollback to version 1", v1_spec)
        assert "+owner: ana@example.com" in v3.diff and "-tier: core" in v3.diff
        # already equal to v1: nothing to do, no new version
        assert service.rollback(s, kind="metric", name="gmv", version=1, author="carol") is None
        with pytest.raises(NotFound, match="has no version 9"):
            service.rollback(s, kind="metric", name="gmv", version=9, author="carol")
    with applied.db.session() as s:
        assert len(service.history(s, kind="metric", name="gmv")) == 3


def test_rollback_is_checked_like_an_apply(applied, helpers):
    """Restoring a version that names a column the source does not have is refused."""
    from metricloop.metrics.validate import column_check, reference_check

    bad = gmv_with(helpers, dimensions=["region", "no_such_column"])
    helpers.apply_text(applied, bad, file="gmv.yaml", check=False)  # v2, written with --no-check
    helpers.apply_text(applied, gmv_with(helpers, dimensions=["region"]), file="gmv.yaml")  # v3
    before = helpers.db_state(applied)
    with pytest.raises(DefinitionError, match="unknown column 'no_such_column'"), applied.db.session() as s:
        service.rollback(
            s, kind="metric", name="gmv", version=2, author="x", checks=[reference_check, column_check(applied)]
        )
    assert helpers.db_state(applied) == before


def test_dry_run_writes_nothing(applied, helpers):
    before = helpers.db_state(applied)
    path = applied.defs_dir / "gmv.yaml"
    path.write_text(gmv_with(helpers, owner="z@example.com"))
    entries, problems = service.read_definitions([path])
    with applied.db.session() as s:
        result = service.apply(s, entries=entries, problems=problems, author="x", dry_run=True)
    assert result.updated == [("metric", "gmv", 2)]
    assert helpers.db_state(applied) == before


def test_all_or_nothing_on_an_empty_database(ws, helpers, data_files):
    metrics = helpers.shop_metrics()
    metrics[3] = {**metrics[3], "measure": {"agg": "avg", "column": "amout"}}
    with pytest.raises(DefinitionError) as err:
        helpers.apply_text(ws, helpers.defs_yaml([helpers.duckdb_source(data_files)], metrics))
    assert len(err.value.problems) == 1
    assert "unknown column 'amout'" in str(err.value)
    assert "nothing was changed" in str(err.value)
    assert helpers.db_state(ws) == ([], [])


def test_all_or_nothing_when_updating(applied, helpers):
    """Good changes to existing metrics, a new good metric and one bad entry: none of it is written."""
    metrics = helpers.shop_metrics()
    metrics[0] = {**metrics[0], "owner": "new@example.com"}  # a good update
    metrics.append({**metrics[1], "name": "orders_copy"})  # a good create
    metrics.append({**metrics[1], "name": "broken", "dimensions": ["region", "regoin"]})  # bad
    before = helpers.db_state(applied)
    with pytest.raises(DefinitionError, match="regoin"):
        helpers.apply_text(applied, helpers.defs_yaml(metrics=metrics), file="more.yaml")
    assert helpers.db_state(applied) == before
    assert applied.catalog().metric("gmv").owner == "ana@example.com"


def test_apply_reads_folders(ws, helpers, data_files):
    (ws.defs_dir / "a.yaml").write_text(helpers.defs_yaml([helpers.duckdb_source(data_files)]))
    (ws.defs_dir / "sub").mkdir()
    (ws.defs_dir / "sub" / "b.yml").write_text(helpers.defs_yaml(metrics=helpers.shop_metrics()[:2]))
    result = helpers.apply_paths(ws, [ws.defs_dir])
    assert len(result.created) == 3


def test_a_missing_file_is_a_problem(ws, helpers, tmp_path):
    with pytest.raises(DefinitionError, match="no such file or folder") as err:
        helpers.apply_paths(ws, [tmp_path / "nope.yaml"])
    assert err.value.problems[0].file.endswith("nope.yaml")


# ------------------------------------------------------------------ bad input: a clear place, nothing written

GOOD_HEAD = """\
sources:
  - name: shop
    type: duckdb
    tables:
      orders: {orders}
      visitors: {visitors}
metrics:
  - name: gmv
    title: {{en: GMV}}
    owner: ana@example.com
    domain: sales
    source: shop
    table: orders
    time_column: order_time
    measure: {{agg: sum, column: amount}}
    dimensions: [region, channel]
"""  # 16 lines; the entry under test starts on line 17


@pytest.fixture
def sqlite_ws(make_ws):
    """Parsing and checking do not depend on the state database; all-or-nothing on both is tested above."""
    return make_ws()


def bad_file(data_files, entry: str) -> str:
    head = GOOD_HEAD.format(orders=data_files.orders_parquet, visitors=data_files.visitors_parquet)
    return head + entry


def rejected(ws, helpers, text: str, *, file: str = "bad.yaml") -> DefinitionError:
    """Apply `text` and return the error, after checking that nothing at all was written."""
    before = helpers.db_state(ws)
    with pytest.raises(DefinitionError) as err:
        helpers.apply_text(ws, text, file=file)
    assert helpers.db_state(ws) == before
    assert "nothing was changed" in str(err.value)
    return err.value


def only_problem(err: DefinitionError, file: str = "bad.yaml"):
    assert len(err.problems) == 1, err.problems
    p = err.problems[0]
    assert p.file.endswith(file)
    assert f"{file}:{p.line}" in str(err)
    return p


def test_malformed_yaml(sqlite_ws, helpers, data_files):
    text = bad_file(data_files, "  - name: orders\n    title: {en: Orders\n    owner: x\n")
    p = only_problem(rejected(sqlite_ws, helpers, text))
    assert p.message.startswith("malformed YAML: expected ',' or '}'")
    assert p.line == 19
    assert "flow mapping that starts on line 18" in p.message  # where the unclosed { is


def test_malformed_yaml_indentation(sqlite_ws, helpers, data_files):
    text = bad_file(data_files, "  - name: orders\n   owner: x\n    domain: y\n")
    p = only_problem(rejected(sqlite_ws, helpers, text))
    assert p.message.startswith("malformed YAML")
    assert p.line == 18  # the mis-indented "owner:"


def test_a_bad_ratio_side_names_one_field(sqlite_ws, helpers, data_files):
    """A ratio side is a measure or a metric reference; the error speaks about the one that was meant."""
    entry = "    ratio: {numerator: {agg: sum}, denominator: {metric: Orders}}\n"
    text = bad_file(data_files, entry).replace("    measure: {agg: sum, column: amount}\n", "")
    err = rejected(sqlite_ws, helpers, text)
    found = {p.field: p.message for p in err.problems}
    assert found == {
        "metrics[0] (gmv).ratio.numerator": "agg 'sum' needs a `column`",
        "metrics[0] (gmv).ratio.denominator.metric": "String should match pattern '^[a-z][a-z0-9_]{0,62}$'",
    }
    assert all(p.line == 16 for p in err.problems)


def test_unknown_column(sqlite_ws, helpers, data_files):
    entry = """\
  - name: aov
    title: {en: AOV}
    owner: ana@example.com
    domain: sales
    source: shop
    table: orders
    time_column: order_time
    ratio:
      numerator: {agg: sum, column: amout}
      denominator: {agg: count}
"""
    p = only_problem(rejected(sqlite_ws, helpers, bad_file(data_files, entry)))
    assert (p.line, p.field) == (25, "metrics[1] (aov).ratio.numerator.column")
    assert "unknown column 'amout' in orders" in p.message
    assert "amount" in p.message  # the columns that do exist are listed


def test_unknown_measure_column(sqlite_ws, helpers, data_files):
    text = bad_file(data_files, "").replace("column: amount", "column: amout")
    p = only_problem(rejected(sqlite_ws, helpers, text))
    assert (p.line, p.field) == (15, "metrics[0] (gmv).measure.column")
    assert "unknown column 'amout'" in p.message


def test_unknown_dimension_in_a_definition(sqlite_ws, helpers, data_files):
    text = bad_file(data_files, "").replace("[region, channel]", "[region, chanel]")
    p = only_problem(rejected(sqlite_ws, helpers, text))
    assert (p.line, p.field) == (16, "metrics[0] (gmv).dimensions")
    assert "unknown column 'chanel'" in p.message


def test_unknown_time_column_and_filter_column(sqlite_ws, helpers, data_files):
    text = bad_file(data_files, "    filters: [\"stat <> 'cancelled'\"]\n").replace("order_time", "ordered_at")
    err = rejected(sqlite_ws, helpers, text)
    found = {(p.line, p.field): p.message for p in err.problems}
    assert "unknown column 'ordered_at'" in found[(14, "metrics[0] (gmv).time_column")]
    assert "unknown column 'stat'" in found[(17, "metrics[0] (gmv).filters")]


def test_unknown_metric_in_a_derived_ratio(sqlite_ws, helpers, data_files):
    entry = """\
  - name: gmv_per_order
    title: {en: GMV per order}
    owner: ana@example.com
    domain: sales
    ratio:
      numerator: {metric: gmv}
      denominator: {metric: ordrs}
"""
    p = only_problem(rejected(sqlite_ws, helpers, bad_file(data_files, entry)))
    assert (p.line, p.field) == (23, "metrics[1] (gmv_per_order).ratio.denominator.metric")
    assert p.message == "unknown metric 'ordrs'"


def test_unknown_source(sqlite_ws, helpers, data_files):
    text = bad_file(data_files, "").replace("source: shop", "source: shopp")
    p = only_problem(rejected(sqlite_ws, helpers, text))
    assert (p.line, p.field, p.message) == (12, "metrics[0] (gmv).source", "unknown source 'shopp'")


def test_duplicate_names(sqlite_ws, helpers, data_files):
    entry = """\
  - name: gmv
    title: {en: GMV again}
    owner: bo@example.com
    domain: sales
    source: shop
    table: orders
    time_column: order_time
    measure: {agg: count}
"""
    p = only_problem(rejected(sqlite_ws, helpers, bad_file(data_files, entry)))
    assert (p.line, p.field) == (17, "metrics[1] (gmv).name")
    assert "duplicate metric name 'gmv'" in p.message
    assert "bad.yaml:8" in p.message  # where the first one is


def test_duplicate_names_across_files(sqlite_ws, helpers, data_files):
    a = sqlite_ws.defs_dir / "a.yaml"
    a.write_text(bad_file(data_files, ""))
    b = sqlite_ws.defs_dir / "b.yaml"
    b.write_text(bad_file(data_files, "").split("metrics:\n")[1].join(["metrics:\n", ""]))
    before = helpers.db_state(sqlite_ws)
    with pytest.raises(DefinitionError, match="duplicate metric name 'gmv'") as err:
        helpers.apply_paths(sqlite_ws, [a, b])
    assert err.value.problems[0].file.endswith("b.yaml")
    assert helpers.db_state(sqlite_ws) == before


def test_duplicate_keys(sqlite_ws, helpers, data_files):
    text = bad_file(data_files, "").replace("    domain: sales\n", "    domain: sales\n    owner: bo@example.com\n")
    p = only_problem(rejected(sqlite_ws, helpers, text))
    assert (p.line, p.field) == (12, "metrics[0].owner")
    assert p.message == "key 'owner' appears twice (first on line 10)"


def test_bad_timezone(sqlite_ws, helpers, data_files):
    text = bad_file(data_files, "    timezone: Asia/Shangai\n")
    p = only_problem(rejected(sqlite_ws, helpers, text))
    assert (p.line, p.field) == (17, "metrics[0] (gmv).timezone")
    assert "unknown timezone 'Asia/Shangai'" in p.message


def test_bad_timezone_in_a_monitor_schedule(sqlite_ws, helpers, data_files):
    # Caught at apply: the scheduler would otherwise fail on it at every tick.
    monitor = 'monitors:\n  - {name: m, metric: gmv, schedule: {cron: "0 9 * * *", timezone: Asia/Shangai}}\n'
    p = only_problem(rejected(sqlite_ws, helpers, bad_file(data_files, "") + monitor))
    assert p.field == "monitors[0] (m).schedule.timezone"
    assert "unknown timezone 'Asia/Shangai'" in p.message


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("    tier: gold\n", "tier", "Input should be 'core', 'important' or 'normal'"),
        ("    ownr: bo\n", "ownr", "unknown field"),
        ("    grain: fortnight\n", "grain", "unknown grain 'fortnight': use minute, hour, day, week, month or a step"),
        ("    filters: [\"1; DROP TABLE orders\"]\n", "filters", "must be a single SQL expression"),
        ("    filters: [\"region IN (SELECT 1)\"]\n", "filters", "subqueries are not allowed"),
    ],
)
def test_bad_field_values(sqlite_ws, helpers, data_files, line, field, message):
    p = only_problem(rejected(sqlite_ws, helpers, bad_file(data_files, line)))
    assert p.line == 17
    assert p.field.startswith(f"metrics[0] (gmv).{field}")
    assert message in p.message


def test_literal_password_in_a_source_url(sqlite_ws, helpers, data_files):
    entry = """\
sources:
  - name: warehouse
    type: sql
    url: postgresql+psycopg://reader:hunter2@db.example.com/sales
"""
    p = only_problem(rejected(sqlite_ws, helpers, entry))
    assert (p.line, p.field) == (4, "sources[0] (warehouse).url")
    assert "literal password" in p.message and "${ENV_VAR}" in p.message
    assert "hunter2" not in str(p)


def test_every_problem_is_reported_at_once(sqlite_ws, helpers, data_files):
    text = bad_file(data_files, "    timezone: Mars/Base\n").replace("domain: sales", "domain: sales\n    tier: gold")
    err = rejected(sqlite_ws, helpers, text)
    assert {p.field.rsplit(".", 1)[-1] for p in err.problems} == {"tier", "timezone"}


def test_not_a_mapping_and_unknown_section(sqlite_ws, helpers):
    err = rejected(sqlite_ws, helpers, "- just\n- a list\n")
    assert "expected a mapping" in err.problems[0].message
    err = rejected(sqlite_ws, helpers, "monitors: []\nmetricz: []\n")
    assert any("unknown section 'metricz'" in p.message and p.line == 2 for p in err.problems)


def test_a_source_change_is_checked_against_the_metrics_that_use_it(sqlite_ws, helpers, data_files):
    """Pointing `orders` at the visitors file would break every orders metric: refused, naming them."""
    helpers.apply_text(sqlite_ws, helpers.defs_yaml([helpers.duckdb_source(data_files)], helpers.shop_metrics()))
    before = helpers.db_state(sqlite_ws)
    moved = helpers.duckdb_source(data_files, orders=data_files.visitors_parquet)
    with pytest.raises(DefinitionError) as err:
        helpers.apply_text(sqlite_ws, helpers.defs_yaml([moved]), file="source.yaml")
    broken = {p.field for p in err.value.problems}
    assert "metric gmv" in broken and "metric aov" in broken and "metric visitors" not in broken
    assert any("unknown column 'amount' in orders" in p.message for p in err.value.problems)
    assert helpers.db_state(sqlite_ws) == before


def test_sql_source_round_trip_keeps_env_references(ws, helpers):
    text = """\
sources:
  - name: warehouse
    type: sql
    url: postgresql+psycopg://reader:${WAREHOUSE_PASSWORD}@db.example.com:5432/sales
    schema: mart
    owner: data@example.com
"""
    assert [c[:2] for c in helpers.apply_text(ws, text, check=False).created] == [("source", "warehouse")]
    with ws.db.session() as s:
        exported = service.dump_yaml(service.export(s))
    doc = yaml.safe_load(exported)
    assert doc["sources"][0]["schema"] == "mart"
    assert "${WAREHOUSE_PASSWORD}" in exported
    result = helpers.apply_text(ws, exported, file="again.yaml", check=False)
    assert (result.created, result.updated) == ([], [])

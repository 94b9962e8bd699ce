"""Incident messages from the zh and en templates, and the webhook payload's stable keys."""

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from metricloop.errors import MetricloopError
from metricloop.notify.render import EVENTS, render_incident
from metricloop.notify.signing import verify_action

KEY = "test-secret-key"


class NoSession:
    """make_incident without a database: rendering needs only the incident's fields."""

    def add(self, inc):
        inc.id, inc.state, inc.kind = 1, "triggered", "metric"
        inc.created_at = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)

    def flush(self):
        pass


@pytest.fixture
def incident(new_incident):
    return new_incident(NoSession())


def _token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def test_chinese_message_carries_everything_a_person_needs(incident):
    subject, body, payload = render_incident(incident, event="created", language="zh",
                                             base_url="http://ml.test/", secret_key=KEY)  # fmt: skip
    assert subject == "[P1 红] 新工单：门店 S012 饮料销售额下降"
    assert "S012 门店销售额比预期低 42%" in body
    assert "实际值：12,345.6，预期值：21,300" in body
    assert "告警界限：18,000 ~ 24,000" in body
    assert "偏离：-42.0%" in body
    assert "  - store=S012, category=Drinks" in body
    assert "负责人：wang.fang@example.com（east-stores）" in body
    assert "创建于 2024-03-01 10:00 北京时间" in body
    view = payload["links"]["incident"]
    assert view.startswith(f"http://ml.test/incidents/{incident.id}?token=") and f"查看工单：{view}\n" in body
    assert payload["incident"]["url"] == view and verify_action(_token(view), key=KEY) == (incident.id, "view")
    ack, resolve = payload["links"]["ack"], payload["links"]["resolve"]
    assert ack.startswith(f"http://ml.test/api/incidents/{incident.id}/ack?token=") and ack in body
    assert resolve.startswith(f"http://ml.test/api/incidents/{incident.id}/resolve?token=") and resolve in body
    assert verify_action(_token(ack), key=KEY) == (incident.id, "ack")
    assert verify_action(_token(resolve), key=KEY) == (incident.id, "resolve")


def test_english_message(incident):
    subject, body, _ = render_incident(incident, event="escalated", language="en", base_url="http://ml.test",
                                       secret_key=KEY, level=1)  # fmt: skip
    assert subject == "[P1 red] Escalated (level 2): 门店 S012 饮料销售额下降"
    assert "Store S012 sales are 42% below expected" in body
    assert "Actual: 12,345.6, expected: 21,300" in body
    assert "Owner: wang.fang@example.com (east-stores)" in body
    assert "Nobody acknowledged this incident in time" in body
    assert "Acknowledge (I'm on it): http://ml.test/api/incidents/" in body


COLOURS = [("P1", "红", "red"), ("P2", "橙", "orange"), ("P3", "黄", "yellow")]


@pytest.mark.parametrize(("severity", "zh", "en"), COLOURS)
def test_severity_colours(incident, severity, zh, en):
    incident.severity = severity
    assert render_incident(incident, event="created", language="zh", base_url="", secret_key=KEY)[0].startswith(
        f"[{severity} {zh}]"
    )
    subject, _, payload = render_incident(incident, event="created", language="en", base_url="", secret_key=KEY)
    assert subject.startswith(f"[{severity} {en}]")
    assert payload["incident"]["severity_colour"] == en


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_event_renders_in_both_languages(incident, event, language):
    subject, body, payload = render_incident(incident, event=event, language=language, base_url="http://x",
                                             secret_key=KEY)  # fmt: skip
    assert incident.title in subject and incident.title in body
    assert payload["event"] == event and payload["language"] == language


TITLE = "门店 S012 饮料销售额下降"


@pytest.mark.parametrize(
    ("event", "language", "subject", "note"),
    [
        ("reassigned", "zh", f"[P1 红] 工单转派：{TITLE}", "该工单已转派给 wang.fang@example.com"),
        ("reassigned", "en", f"[P1 red] Reassigned: {TITLE}", "This incident is now assigned to wang.fang@example.com"),
        ("severity_raised", "zh", f"[P1 红] 严重程度升级：{TITLE}", "已升级为 P1（红），处理时限随之收紧"),
        ("severity_raised", "en", f"[P1 red] Severity raised: {TITLE}", "it is now P1 (red), with that severity's"),
    ],
)
def test_reassigned_and_severity_raised_have_their_own_message(incident, event, language, subject, note):
    got, body, payload = render_incident(incident, event=event, language=language, base_url="http://ml.test",
                                         secret_key=KEY)  # fmt: skip
    assert got == subject and note in body
    assert body.startswith("🔴 P1") and incident.summary[f"explanation_{language}"] in body
    assert all(f"  - {s}\n" in body for s in incident.slices)
    links = payload["links"]
    assert links["incident"].startswith(f"http://ml.test/incidents/{incident.id}?token=") and links["incident"] in body
    assert links["ack"] in body and verify_action(_token(links["ack"]), key=KEY) == (incident.id, "ack")
    assert links["resolve"] in body and verify_action(_token(links["resolve"]), key=KEY) == (incident.id, "resolve")
    assert payload["event"] == event and payload["values"]["deviation_pct"] == -42.04


def test_a_reassignment_is_announced_as_one(ws, apply_defs, new_incident):
    """The incident flow queues the reassigned message itself, not the new-incident one."""
    from metricloop.incidents import service
    from metricloop.notify.models import Notification

    apply_defs(ws, "channels:\n  - {name: ops_hook, type: webhook, url: 'http://127.0.0.1:9/hook', language: en}\n")
    with ws.db.session() as s:
        inc = new_incident(s, state="triggered", channels=["ops_hook"])
        service.assign(s, ws, ws.catalog(), incident_id=inc.id, assignee="li.lei@example.com", actor="zhang.wei")
    with ws.db.session() as s:
        (row,) = s.query(Notification).all()
    assert row.event == "reassigned" and row.subject == f"[P1 red] Reassigned: {TITLE}"
    assert "now assigned to li.lei@example.com" in row.body and row.payload["event"] == "reassigned"


def test_links_follow_the_state(incident):
    incident.state = "acknowledged"
    _, body, payload = render_incident(incident, event="acknowledged", language="en", base_url="http://x",
                                       secret_key=KEY)  # fmt: skip
    assert payload["links"]["ack"] is None and payload["links"]["resolve"]
    assert "Acknowledge (I'm on it)" not in body and "/ack?token=" not in body
    incident.state = "resolved"
    _, body, payload = render_incident(incident, event="resolved", language="zh", base_url="http://x",
                                       secret_key=KEY)  # fmt: skip
    assert payload["links"]["ack"] is None and payload["links"]["resolve"] is None
    assert "/ack?token=" not in body and "/resolve?token=" not in body
    assert payload["links"]["incident"] in body  # the page still opens: what happened, who resolved it


def test_payload_keys_are_stable(incident):
    _, _, payload = render_incident(incident, event="created", language="en", base_url="http://x", secret_key=KEY)
    assert sorted(payload) == sorted(
        ["version", "event", "seq", "level", "language", "subject", "text", "incident", "explanation",
         "severity_reason", "values", "links", "causes"]
    )  # fmt: skip
    assert sorted(payload["incident"]) == sorted(
        ["id", "title", "state", "severity", "severity_colour", "kind", "metric", "monitor", "slices", "labels",
         "assignee", "team", "created_at", "acknowledged_at", "resolved_at", "url"]
    )  # fmt: skip
    assert sorted(payload["values"]) == ["actual", "deviation_pct", "expected", "lower", "unit", "upper"]
    assert sorted(payload["links"]) == ["ack", "expected", "false_alarm", "incident", "resolve"]
    assert payload["values"]["actual"] == 12345.6
    assert payload["incident"]["created_at"] == "2024-03-01T02:00:00Z"


REASON = {
    "severity_reason_zh": "P1：涉及 400 CNY，占总量 11%（核心指标：占总量 10% 起为 P1，3% 起为 P2）；比预期低 11%",
    "severity_reason_en": "P1: 400 CNY at stake, 11% of the total (core metric: P1 from 10%, P2 from 3% of the total); "
    "11% below expected",
}


@pytest.mark.parametrize(
    ("language", "line"),
    [
        ("zh", "定为 P1 的原因：涉及 400 CNY，占总量 11%（核心指标：占总量 10% 起为 P1，3% 起为 P2）；比预期低 11%\n"),
        ("en", "Why P1: 400 CNY at stake, 11% of the total (core metric: P1 from 10%, P2 from 3% of the total); "
               "11% below expected\n"),
    ],
)  # fmt: skip
def test_a_new_or_raised_incident_says_why_it_has_its_severity(incident, language, line):
    incident.summary = {**incident.summary, **REASON}
    for event in ("created", "severity_raised"):
        _, body, payload = render_incident(incident, event=event, language=language, base_url="http://x",
                                           secret_key=KEY)  # fmt: skip
        assert line in body, event
        assert body.index(incident.summary[f"explanation_{language}"]) < body.index(line)  # after what happened
        assert payload["severity_reason"] == REASON[f"severity_reason_{language}"]
    for event in ("repeat", "escalated", "resolved"):  # reminders stay short; the webhook still has it
        _, body, payload = render_incident(incident, event=event, language=language, base_url="http://x",
                                           secret_key=KEY)  # fmt: skip
        assert line not in body and payload["severity_reason"] == REASON[f"severity_reason_{language}"]


def test_a_reason_for_another_severity_is_not_shown(incident):
    """A reason recorded for P3 before the incident became P1 does not explain P1."""
    incident.summary = {**incident.summary, "severity_reason_en": "P3: 4% below expected (core metric: …)"}
    _, body, payload = render_incident(incident, event="created", language="en", base_url="http://x", secret_key=KEY)
    assert "Why P1" not in body and "P3: 4%" not in body and payload["severity_reason"] is None


def test_an_incident_without_numbers_still_renders(incident):
    incident.summary = {}
    incident.slices = []
    incident.assignee = ""
    _, body, _ = render_incident(incident, event="created", language="zh", base_url="http://x", secret_key=KEY)
    assert "负责人：未分配" in body and "实际值" not in body


def test_unknown_event_is_a_clear_error(incident):
    with pytest.raises(MetricloopError, match="unknown notification event 'exploded'"):
        render_incident(incident, event="exploded", language="zh", base_url="", secret_key=KEY)


def test_messages_take_the_title_in_their_language(incident):
    """A Chinese workspace's incident read in English: subject, body and payload carry the English
    title the summary keeps, as the incident page does; without one, the stored title."""
    titles = {"title_zh": "门店 S012 GMV 下降", "title_en": "GMV down at store S012"}
    incident.summary = {**(incident.summary or {}), **titles}
    subject, body, payload = render_incident(incident, event="created", language="en", base_url="http://x",
                                             secret_key=KEY)  # fmt: skip
    assert "GMV down at store S012" in subject and "GMV down at store S012" in body
    assert payload["incident"]["title"] == "GMV down at store S012"
    subject, _, payload = render_incident(incident, event="created", language="zh", base_url="http://x", secret_key=KEY)
    assert "门店 S012 GMV 下降" in subject and payload["incident"]["title"] == "门店 S012 GMV 下降"


def test_the_severity_reason_names_the_member_that_set_it():
    """An incident headed by the total that takes its level from one slice says which slice: the
    console read "fulfilment 96.4 %, 3 % below; why P1: … 12% below expected" with no word of where."""
    from metricloop.notify.render import severity_reason

    summary = {"severity_reason_en": "P1: severity rule 1 of the monitor (region=~.+); 12% below expected",
               "severity_reason_zh": "P1：监控的第 1 条严重度规则（region=~.+）；比预期低 12%",
               "severity_slice": "region=South,carrier=ZTO",
               "members": [{"slice": "*"}, {"slice": "region=South,carrier=ZTO"}]}
    assert severity_reason(summary, "P1", "en") == (
        "P1: region=South,carrier=ZTO: severity rule 1 of the monitor (region=~.+); 12% below expected")
    assert severity_reason(summary, "P1", "zh").startswith("P1：region=South,carrier=ZTO：监控的第 1 条")
    # set by the member the incident is headed by: nothing to add; another severity's reason: none
    assert severity_reason({**summary, "severity_slice": "*"}, "P1", "en") == summary["severity_reason_en"]
    assert severity_reason(summary, "P2", "en") is None

"""Install the demo into a workspace: data, definitions (defs/demo.yaml) and apply."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import func, select

from metricloop.definitions import service
from metricloop.incidents.models import Incident
from metricloop.metrics.validate import column_check, reference_check
from metricloop.monitors.validate import loop_check

DEFINITIONS = Path(__file__).with_name("definitions.yaml")
LOOP = Path(__file__).with_name("loop.yaml")
TOKEN_FILE = ".api_token"

# The console's demo users, one per role and a logistics-only operator: (name, role, domains, display name).
# Their password is NAME-demo (e.g. admin / admin-demo); printed at set-up, documented in the README.
DEMO_USERS = (
    ("admin", "admin", [], "Demo admin 管理员"),
    ("operator", "operator", ["sales", "fulfilment", "inventory", "traffic", "service"], "Demo operator 值班"),
    ("viewer", "viewer", ["sales", "fulfilment", "inventory", "traffic", "service"], "Demo viewer 只读"),
    ("logistics", "operator", ["fulfilment", "inventory"], "物流 operator (logistics only)"),
)


def demo_password(name: str) -> str:
    return f"{name}-demo"


def demo_definitions(into: str | None = None) -> str:
    text = DEFINITIONS.read_text(encoding="utf-8")
    if into is None:
        return text
    doc = yaml.safe_load(text)
    doc["sources"] = [
        {
            "name": "demo",
            "type": "sql",
            "description": "Demo retail chain loaded into a database server",
            "owner": "data.platform@demo.metricloop.dev",
            "url": into,
        }
    ]
    return service.dump_yaml(doc)


DEMO_TZ = ZoneInfo("Asia/Shanghai")  # the demo's data and its people are in China


def default_end(now: datetime | None = None) -> date:
    """The demo data's last day: yesterday in Asia/Shanghai, where its timestamps are local time and
    the replay ends the morning after. Not yesterday on this machine: after 16:00 UTC it is already
    tomorrow in Shanghai, and the hourly monitors would find a whole day of data missing."""
    now = now or datetime.now(DEMO_TZ)
    return now.astimezone(DEMO_TZ).date() - timedelta(days=1)


def install_demo(
    ws,
    *,
    scale: float = 0.1,
    seed: int = 42,
    end: str | date | None = None,
    into: str | None = None,
    progress=None,
    replay_days: int = 7,
) -> dict:
    from metricloop.demo.generate import generate

    last = date.fromisoformat(str(end)) if end else default_end()
    summary = generate(ws.home, scale=scale, seed=seed, end=last, progress=progress)
    if into:
        from metricloop.demo.load import load_into

        summary["loaded"] = load_into(into, ws.data_dir, progress=progress)
    defs = ws.defs_dir / "demo.yaml"
    defs.write_text(demo_definitions(into), encoding="utf-8")
    loop = ws.defs_dir / "loop.yaml"
    loop.write_text(LOOP.read_text(encoding="utf-8"), encoding="utf-8")
    entries, problems = service.read_definitions([defs, loop])
    with ws.db.session() as s:
        summary["apply"] = service.apply(
            s,
            entries=entries,
            problems=problems,
            author="metricloop demo",
            checks=[reference_check, loop_check, column_check(ws)],
        )
    summary["history"] = 0
    if replay_days:  # the past the replayed week follows: resolved incidents the knowledge base learned from
        from metricloop.demo.history import seed_history

        summary["history"] = seed_history(ws, before=last - timedelta(days=replay_days))
    seen = _last_incident(ws)
    summary["replay"] = replay(ws, last=last, days=replay_days, progress=progress) if replay_days else []
    summary["incidents"] = incidents_since(ws, seen)
    summary["token_file"] = demo_token(ws)
    summary["users"] = demo_users(ws)
    return summary


def demo_users(ws) -> list[tuple[str, str, str]]:
    """The demo's console users (those not there yet): [(name, role, password)]."""
    from metricloop.auth.users import add_user, list_users

    made = []
    with ws.db.session() as s:
        taken = {u.name for u in list_users(s)}
        for name, role, domains, display in DEMO_USERS:
            if name in taken:
                continue
            add_user(s, name=name, password=demo_password(name), role=role, domains=domains, display_name=display)
            made.append((name, role, demo_password(name)))
    return made


def demo_token(ws) -> Path:
    """An operator token for the person trying the demo, since every API call needs one. Written to
    HOME/.api_token (readable by the owner only): `curl -H "Authorization: Bearer $(cat .api_token)" …`."""
    from metricloop.auth.service import create_token, list_tokens

    with ws.db.session() as s:
        taken = {t.name for t in list_tokens(s)}  # a demo installed again into the same state database
        name = next(n for n in ("demo", *(f"demo-{i}" for i in range(2, 10_000))) if n not in taken)
        token = create_token(s, name=name, role="operator", user="demo")
    path = ws.home / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    path.chmod(0o600)
    return path


def _last_incident(ws) -> int:
    with ws.db.session() as s:
        return s.scalar(select(func.max(Incident.id))) or 0


def incidents_since(ws, after_id: int) -> dict[str, int]:
    """Incidents opened after incident `after_id`, per kind: {"metric": n, "data_quality": n}. A run's details
    list only the metric incidents it opened; data-quality incidents come from the checks before detection."""
    with ws.db.session() as s:
        rows = s.execute(select(Incident.kind, func.count()).where(Incident.id > after_id).group_by(Incident.kind))
        return {"metric": 0, "data_quality": 0} | dict(rows.all())


def replay_report(summary: dict) -> str:
    """The line that tells a new user what the replay left waiting, e.g.
    "replayed 35 monitor runs: 9 metric incidents and 2 data-quality incidents opened, 1 run failed"."""
    runs = summary.get("replay", [])
    opened = summary.get("incidents") or {}
    failed = sum(r.status == "failed" for r in runs)

    def n(count: int, what: str) -> str:
        return f"{count} {what}{'' if count == 1 else 's'}"

    line = (
        f"replayed {n(len(runs), 'monitor run')}: {n(opened.get('metric', 0), 'metric incident')} and "
        f"{n(opened.get('data_quality', 0), 'data-quality incident')} opened"
    )
    line += f", {n(failed, 'run')} failed" if failed else ""
    history = summary.get("history") or 0
    return line + (f"; {n(history, 'resolved past incident')} seeded for the knowledge base" if history else "")


def replay(ws, *, last: date, days: int = 7, progress=None, now: datetime | None = None) -> list:
    """Run the demo's daily monitors as they would have run each morning of the last `days` days, so a new
    user finds the recent incidents waiting. Notifications go to the demo inbox when the server runs. The
    last morning is the one after `last`; set up before 09:00 there, it runs at `now` (default: the clock),
    never later: a run dated later today would read as one from the future."""
    from datetime import time

    from metricloop.monitors.service import run_monitor

    monitors = [m for m in ws.catalog().all("monitor").values() if m.schedule.cron and m.schedule.cron.startswith("0 ")]
    runs = []
    total = max(1, days * len(monitors))
    latest = (now or datetime.now(DEMO_TZ)).astimezone(DEMO_TZ)
    for i in range(days):
        morning = datetime.combine(last - timedelta(days=days - 2 - i), time(9), tzinfo=DEMO_TZ)
        morning = min(morning, latest)
        for j, m in enumerate(monitors):
            if progress:
                progress(f"replaying {morning:%m-%d} {m.name}", (i * len(monitors) + j) / total)
            # the clock of the replayed morning: an incident opened on Tuesday says Tuesday 09:00, not now
            runs.append(run_monitor(ws, m.name, at=morning, trigger="replay", scheduled_for=morning, now=morning))
    return runs

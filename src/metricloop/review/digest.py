"""The weekly review sent to channels: the `report` definitions, queued in the outbox once per report and week.

The scheduler calls `send_due` every tick. A report is due when its schedule's latest slot has passed; the week it
covers is the last full ISO week before that slot (workspace time). Every message's idempotency key is
`report:{name}:{week}:{channel}:{recipient}`, and all of one report's messages are queued in one transaction, so
a restart (or a second instance) never queues a week twice; after downtime only the latest week goes out.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from metricloop.db.times import as_utc
from metricloop.notify.models import Notification

log = logging.getLogger("metricloop.review")
EVENT = "weekly_report"


def key_prefix(name: str, week: str) -> str:
    return f"report:{name}:{week}:"


def send_due(ws, *, now: datetime | None = None, only: str | None = None) -> list[tuple[str, str, int]]:
    """Queue the digest of every report whose slot has passed and whose week is not queued yet.
    Returns (report, week, messages queued) for each report it queued."""
    from metricloop.monitors.service import last_slot
    from metricloop.review.weeks import last_full_week

    now = as_utc(now)
    tz = ws.config.get("timezone") or "Asia/Shanghai"
    out = []
    for name, spec in sorted(ws.catalog().all("report").items()):
        if (only and name != only) or not spec.enabled:
            continue
        week = last_full_week(tz, last_slot(spec, now))
        with ws.db.session() as s:
            prefix = key_prefix(name, week.label)
            queued = Notification.idempotency_key.startswith(prefix, autoescape=True)
            done = s.scalar(select(Notification.id).where(queued).limit(1))
            if done is not None:
                continue
            try:
                n = queue(s, ws, spec, week=week, now=now)
            except Exception:  # one bad report (a team renamed since) must not stop the others
                log.exception("weekly report %s for %s not queued; retrying at the next tick", name, week.label)
                s.rollback()
                continue
        out.append((name, week.label, n))
        log.info("weekly report %s for %s: %s message(s) queued", name, week.label, n)
    return out


def queue(db_session, ws, spec, *, week, now: datetime) -> int:
    """Queue one report's digest for `week` on each of its channels, in the caller's transaction."""
    from metricloop.incidents.service import recipients_for
    from metricloop.notify.outbox import enqueue
    from metricloop.review import render
    from metricloop.review.report import build

    catalog = ws.catalog()
    tz = ws.config.get("timezone") or "Asia/Shanghai"
    reports = {}
    n = 0
    for channel in spec.channels:
        channel_spec = catalog.all("channel").get(channel)
        if channel_spec is None:
            log.warning("weekly report %s: no channel named '%s'", spec.name, channel)
            continue
        lang = spec.language or channel_spec.language
        if lang not in reports:
            reports[lang] = build(db_session, catalog, tz=tz, week=week, team=spec.team, domain=spec.domain, lang=lang,
                                  now=now)  # fmt: skip
        report = reports[lang]
        url = render.report_url(ws.settings.base_url, report, lang) if ws.settings.base_url else ""
        subject, body, payload = render.digest(report, lang, url=url)
        payload = {**payload, "report_name": spec.name}
        for rcpt in recipients_for(catalog, channel, list(spec.to)):
            row = enqueue(
                db_session,
                key=f"{key_prefix(spec.name, week.label)}{channel}:{rcpt}",
                channel=channel,
                event=EVENT,
                recipient=rcpt,
                subject=subject,
                body=body,
                payload=payload,
                language=lang,
                max_attempts=channel_spec.max_attempts,
            )
            n += row is not None
    return n

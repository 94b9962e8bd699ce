"""Background work of `metricloop serve`: due monitor runs, escalation/SLA timers and the outbox dispatcher.

Everything it acts on is a row, so any number of these can run (on several instances sharing PostgreSQL)
and a restart loses nothing: a missed monitor slot is run once, due timers fire, unsent messages go out.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("metricloop.scheduler")


class Background:
    def __init__(self, ws, *, tick: float = 20.0, dispatch_interval: float = 2.0) -> None:
        self.ws = ws
        self.tick = tick
        self.dispatch_interval = dispatch_interval
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        from metricloop.notify.dispatcher import run_dispatcher

        self.stop_event.clear()
        self.threads = [
            threading.Thread(target=self._loop, name="metricloop-scheduler", daemon=True),
            threading.Thread(
                target=run_dispatcher,
                args=(self.ws, self.stop_event),
                kwargs={"interval": self.dispatch_interval},
                name="metricloop-dispatcher",
                daemon=True,
            ),
        ]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            self.tick_once()
            self.stop_event.wait(self.tick)

    def tick_once(self) -> None:
        from metricloop.incidents.service import process_timers
        from metricloop.monitors.service import run_due

        try:
            for run in run_due(self.ws):
                log.info("monitor %s: run %s %s", run.monitor, run.id, run.status)
        except Exception:  # a bad definition or a database blip must not end the loop
            log.exception("scheduling monitors failed; retrying at the next tick")
        try:
            process_timers(self.ws)
        except Exception:
            log.exception("processing timers failed; retrying at the next tick")
        self.tune_weekly()
        try:
            from metricloop.review.digest import send_due

            send_due(self.ws)  # the weekly reviews whose slot has passed, once per report and week
        except Exception:
            log.exception("queueing weekly reports failed; retrying at the next tick")

    TUNING_CHECK = 3600.0  # seconds between looks for monitors due a weekly tuning suggestion

    def tune_weekly(self, now=None) -> list:
        """Weekly tuning suggestions for monitors whose precision is poor (metricloop.tuning.service.weekly): looked
        for once an hour, since a suggestion is a backtest and the runs come first."""
        import time

        from metricloop.tuning.service import weekly

        if time.monotonic() - getattr(self, "_tuning_checked", -self.TUNING_CHECK) < self.TUNING_CHECK:
            return []
        self._tuning_checked = time.monotonic()
        try:
            rows = weekly(self.ws, now=now)
        except Exception:
            log.exception("weekly tuning failed; retrying in an hour")
            return []
        for row in rows:
            log.info("monitor %s: tuning suggestion %s %s", row.monitor, row.id, row.status)
        return rows

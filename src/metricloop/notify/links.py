"""The signed links of messages: what is stored and shown cannot act; only what a channel delivers can, once.

A message is rendered when it is queued, but its links are signed only when the dispatcher delivers it. The outbox
row holds each link with a placeholder token, `?token=<ack:0>` (the action and the incident's episode), and
`arm()` swaps the placeholders for tokens that name the row's recipient and how it was reached (e-mail, webhook,
chat), just before the channel sends it. So what the outbox shows over the API or the CLI (and what sits in the
database) holds no usable link; the e-mail, the webhook and the chat message do. What a receiver shows back (the
demo inbox) goes through `redact()`.

An acknowledge or resolve link acts once: acting records a `LinkUse` row keyed by the link's nonce and action, in
the transaction that changes the incident, so a second use (from any process, after any restart) is refused.
A reopen starts a new episode (the incident's number of reopens): links of an earlier episode no longer act.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from metricloop.db.models import Base, utcnow
from metricloop.notify.signing import DEFAULT_TTL, sign_action

# How a link reached its holder, as the timeline says it ("zhou.qiang@shop.test via e-mail link").
VIA = {"email": "e-mail link", "webhook": "webhook link", "apprise": "chat link"}
PLACEHOLDER = re.compile(r"([?&]token=)<(view|ack|resolve|false_alarm|expected):(\d+)>")
# A real token in a URL: `token=<payload>.<mac>`, base64url, possibly %-encoded as it is in a query string.
SIGNED = re.compile(r"([?&]token=)[A-Za-z0-9_%-]+(?:\.|%2[Ee])[A-Za-z0-9_%-]+")
REDACTED = "<redacted>"


class LinkUse(Base):
    """An acknowledge or resolve link that has acted: it does not act again."""

    __tablename__ = "link_uses"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    action: Mapped[str] = mapped_column(String(16), primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    episode: Mapped[int] = mapped_column(Integer, default=0)
    actor: Mapped[str] = mapped_column(String(500), default="")
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def placeholder(action: str, episode: int) -> str:
    return f"<{action}:{int(episode)}>"


def episode_of(db_session: Session, incident_id: int) -> int:
    """The incident's episode: how many times it was reopened. Links carry it; a reopen outdates them."""
    from metricloop.incidents.models import IncidentEvent

    db_session.flush()
    q = select(func.count()).where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind == "reopened")
    return int(db_session.scalar(q) or 0)


def actor_of(recipient: str, via: str) -> tuple[str, str]:
    """(who, how) for the timeline: the link's recipient and the way it reached them ("link", "" for a token that
    names neither)."""
    if not recipient and not via:
        return "link", ""
    return (recipient or "link"), VIA.get(via, "message link")


def nonce_for(key: str, idempotency_key: str) -> str:
    """The same outbox row gets the same nonce on every attempt: a retried message's links are the same links."""
    digest = hmac.new(key.encode("utf-8"), f"link:{idempotency_key}".encode(), hashlib.sha256).digest()[:15]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def _walk(value: Any, fn) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _walk(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, fn) for v in value]
    return value


def arm(msg, *, key: str, via: str, ttl_seconds: int = DEFAULT_TTL, now: float | None = None):
    """The Delivery with its placeholder tokens signed for its recipient (a copy; the row is not changed)."""
    if msg.incident_id is None or not key:
        return msg
    nonce = nonce_for(key, msg.key)
    tokens: dict[tuple[str, int], str] = {}

    def sign(m: re.Match) -> str:
        action, episode = m.group(2), int(m.group(3))
        if (action, episode) not in tokens:
            tokens[action, episode] = sign_action(
                msg.incident_id,
                action,
                key=key,
                ttl_seconds=ttl_seconds,
                now=now,
                episode=episode,
                nonce=nonce,
                recipient=msg.recipient,
                via=via,
            )
        return m.group(1) + tokens[action, episode]

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(sign, text) if "token=<" in text else text

    return dataclasses.replace(msg, subject=fill(msg.subject), body=fill(msg.body), payload=_walk(msg.payload, fill))


def redact(value: Any) -> Any:
    """Text, or a JSON value, with every signed link token replaced by `<redacted>` (for showing what was sent)."""
    return _walk(value, lambda text: SIGNED.sub(rf"\1{REDACTED}", text) if "token=" in text else text)


def used(db_session: Session, nonce: str, action: str) -> LinkUse | None:
    return db_session.get(LinkUse, (nonce, action))


def spend(db_session: Session, *, nonce: str, action: str, incident_id: int, episode: int, actor: str) -> None:
    """Record the link's use in the caller's transaction (which also changes the incident)."""
    db_session.add(LinkUse(nonce=nonce, action=action, incident_id=incident_id, episode=episode, actor=actor[:500]))
    db_session.flush()

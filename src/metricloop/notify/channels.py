"""Channels deliver one outbox row each: email (SMTP), signed JSON webhooks, apprise (DingTalk, WeCom,
Feishu, Slack …) and action calls. A failed delivery raises DeliveryError, which says whether trying
again could help (Alertmanager's habit): connection errors, timeouts, 5xx, 408 and 429 can; other 4xx
answers and bad configuration cannot, and the row is dead-lettered at once with a clear error.

Every message carries its idempotency key. Secrets are written as ${ENV_VAR} in definitions,
expanded only here, and masked in every error text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from metricloop.errors import MetricloopError
from metricloop.notify.signing import IDEMPOTENCY_HEADER, webhook_headers
from metricloop.sources.secrets import expand, mask

ACTION_PREFIX = "action:"
USER_AGENT = "metricloop-notify/1"
# Long header lines (the idempotency key) stay on one line instead of folding right after the colon,
# which some parsers read back with a leading space. 998 is RFC 5322's hard limit.
_MAIL_POLICY = policy.SMTP.clone(max_line_length=998)
_apprise_lock = threading.Lock()  # apprise logs to one global logger; LogCapture is not per-thread


class DeliveryError(MetricloopError):
    """A delivery attempt failed. `retryable` says whether a later attempt could succeed."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class Delivery:
    """What a channel needs of an outbox row (a plain copy, used outside any transaction)."""

    id: int
    key: str
    kind: str
    channel: str
    recipient: str
    event: str
    subject: str
    body: str
    payload: dict = field(default_factory=dict)
    incident_id: int | None = None
    attempt: int = 1  # the attempt this delivery is (attempts made before it + 1, once it begins)
    lease: str = ""  # the claim's lease token: only its holder records the outcome
    seq: int = 0  # the incident's event number this message is about

    @classmethod
    def of(cls, row: Any) -> Delivery:
        return cls(
            id=row.id,
            key=row.idempotency_key,
            kind=row.kind,
            channel=row.channel,
            recipient=row.recipient,
            event=row.event,
            subject=row.subject,
            body=row.body,
            payload=dict(row.payload or {}),
            incident_id=row.incident_id,
            attempt=row.attempts + 1,
            lease=row.lease_token,
            seq=row.seq,
        )


def message_id(key: str) -> str:
    """The same idempotency key always gives the same Message-ID, so mail systems can drop repeats."""
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:40]}@metricloop>"


class _Secrets:
    """${ENV} expansion that remembers the values, to mask them in errors."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.values: list[str] = []

    def expand(self, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            out, used = expand(value, where=self.where)
        except MetricloopError as e:
            raise DeliveryError(f"{self.where}: {e.message}", retryable=False) from None
        self.values.extend(used)
        return out

    def mask(self, text: str) -> str:
        return mask(text, self.values)


# ------------------------------------------------------------------ email


def _smtp_error(e: Exception, where: str, timeout: float) -> DeliveryError:
    if isinstance(e, smtplib.SMTPAuthenticationError):
        return DeliveryError(
            f"{where}: the SMTP server refused the login ({e.smtp_code} {_text(e.smtp_error)})", retryable=False
        )
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{r}: {c} {_text(m)}" for r, (c, m) in e.recipients.items())
        retry = all(400 <= c < 500 for c, _ in e.recipients.values())
        return DeliveryError(f"{where}: every recipient was refused ({refused})", retryable=retry)
    if isinstance(e, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"{where}: {e} (check starttls/ssl and username)", retryable=False)
    if isinstance(e, smtplib.SMTPResponseException):
        retry = 400 <= e.smtp_code < 500
        return DeliveryError(f"{where}: SMTP error {e.smtp_code} {_text(e.smtp_error)}", retryable=retry)
    if isinstance(e, ssl.SSLCertVerificationError):
        return DeliveryError(f"{where}: TLS certificate not trusted ({e.verify_message})", retryable=False)
    if isinstance(e, socket.timeout | TimeoutError):
        return DeliveryError(f"{where}: no answer within {timeout:g}s", retryable=True)
    if isinstance(e, socket.gaierror):
        return DeliveryError(f"{where}: cannot resolve the host ({e})", retryable=True)
    if isinstance(e, smtplib.SMTPException | OSError):
        return DeliveryError(f"{where}: {type(e).__name__}: {e}", retryable=True)
    return DeliveryError(f"{where}: {type(e).__name__}: {e}", retryable=False)


def _text(b: bytes | str) -> str:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)


def send_email(spec: Any, msg: Delivery) -> str:
    where = f"email channel {spec.name} ({spec.host}:{spec.port})"
    secrets = _Secrets(f"channel {spec.name}")
    password = secrets.expand(spec.password)
    username = secrets.expand(spec.username)
    # One row is one recipient; rows queued for the channel itself (no address) go to its `to` list.
    rcpts = [msg.recipient] if "@" in msg.recipient else list(spec.to)
    if not rcpts:
        raise DeliveryError(
            f"{where}: no recipient address ('{msg.recipient}' is not one and `to` is empty)", retryable=False
        )
    m = EmailMessage(policy=_MAIL_POLICY)
    m["Subject"] = msg.subject or "metricloop"
    m["From"] = spec.sender
    m["To"] = ", ".join(rcpts)
    m["Date"] = formatdate(usegmt=True)
    m["Message-ID"] = message_id(msg.key)
    m[IDEMPOTENCY_HEADER] = msg.key
    if msg.incident_id is not None:
        m["X-Metricloop-Incident"] = str(msg.incident_id)
    m.set_content(msg.body or msg.subject, charset="utf-8")
    try:
        smtp_cls = smtplib.SMTP_SSL if spec.ssl else smtplib.SMTP
        with smtp_cls(spec.host, spec.port, timeout=spec.timeout) as smtp:
            if spec.starttls and not spec.ssl:
                smtp.starttls(context=ssl.create_default_context())
            if username:
                smtp.login(username, password or "")
            refused = smtp.send_message(m, to_addrs=rcpts)
    except Exception as e:  # noqa: BLE001 - classified into retryable or not
        err = _smtp_error(e, where, spec.timeout)
        raise DeliveryError(secrets.mask(err.message), retryable=err.retryable) from None
    if refused:
        return f"sent; refused by the server for {', '.join(refused)}"
    return f"250 accepted for {', '.join(rcpts)}"


# ------------------------------------------------------------------ HTTP (webhooks and actions)


def _caused_by(error: BaseException, kind: type) -> bool:
    seen = 0
    cur: BaseException | None = error
    while cur is not None and seen < 10:
        if isinstance(cur, kind):
            return True
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    return False


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; the exponential backoff is good enough


def post_http(
    client: httpx.Client,
    *,
    where: str,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    secret: str | None,
    key: str,
    timeout: float,
) -> str:
    """Send a signed JSON body; classify the outcome. Returns a short note such as 'HTTP 200'."""
    all_headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, **headers}
    all_headers.update(webhook_headers(secret, body, key))
    try:
        r = client.request(method, url, content=body, headers=all_headers, timeout=httpx.Timeout(timeout))
    except httpx.TimeoutException:
        raise DeliveryError(f"{where}: no answer from {url} within {timeout:g}s", retryable=True) from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
        raise DeliveryError(f"{where}: the URL '{url}' is wrong ({e})", retryable=False) from None
    except httpx.ConnectError as e:
        if _caused_by(e, ssl.SSLCertVerificationError):
            raise DeliveryError(
                f"{where}: the TLS certificate of {url} is not trusted ({e})", retryable=False
            ) from None
        raise DeliveryError(f"{where}: cannot connect to {url} ({e})", retryable=True) from None
    except httpx.TransportError as e:
        raise DeliveryError(f"{where}: {type(e).__name__} talking to {url} ({e})", retryable=True) from None
    if 200 <= r.status_code < 300:
        return f"HTTP {r.status_code}"
    excerpt = " ".join(r.text[:200].split())
    detail = f"{where}: {method} {url} answered HTTP {r.status_code} {r.reason_phrase}" + (
        f": {excerpt}" if excerpt else ""
    )
    if r.status_code in (408, 429) or r.status_code >= 500:
        raise DeliveryError(detail, retryable=True, retry_after=_retry_after(r))
    if 300 <= r.status_code < 400:
        detail += f" (redirect to {r.headers.get('location', '?')}; configure the final URL)"
    raise DeliveryError(detail, retryable=False)


def json_body(payload: dict, key: str) -> bytes:
    """The exact bytes sent (and signed): the payload plus its idempotency key, UTF-8 JSON."""
    return json.dumps({**payload, "idempotency_key": key}, ensure_ascii=False, separators=(",", ":")).encode()


def send_webhook(client: httpx.Client, spec: Any, msg: Delivery) -> str:
    where = f"webhook channel {spec.name}"
    secrets = _Secrets(f"channel {spec.name}")
    url = secrets.expand(spec.url) or ""
    headers = {k: secrets.expand(v) or "" for k, v in spec.headers.items()}
    secret = secrets.expand(spec.secret)
    try:
        return post_http(
            client,
            where=where,
            method="POST",
            url=url,
            headers=headers,
            body=json_body(msg.payload, msg.key),
            secret=secret,
            key=msg.key,
            timeout=spec.timeout,
        )
    except DeliveryError as e:
        raise DeliveryError(secrets.mask(e.message), retryable=e.retryable, retry_after=e.retry_after) from None


def send_action(client: httpx.Client, msg: Delivery, *, timeout: float = 10.0) -> str:
    """An action row carries its call: url, method, headers, the ${ENV} secret reference and the body."""
    p = msg.payload
    name = msg.channel.removeprefix(ACTION_PREFIX)
    where = f"action {name}"
    secrets = _Secrets(where)
    if not p.get("url"):
        raise DeliveryError(f"{where}: the outbox row has no url", retryable=False)
    url = secrets.expand(p["url"]) or ""
    headers = {k: secrets.expand(v) or "" for k, v in (p.get("headers") or {}).items()}
    secret = secrets.expand(p.get("secret"))
    body = json.dumps(p.get("body", {}), ensure_ascii=False, separators=(",", ":")).encode()
    try:
        return post_http(
            client,
            where=where,
            method=p.get("method", "POST"),
            url=url,
            headers=headers,
            body=body,
            secret=secret,
            key=msg.key,
            timeout=float(p.get("timeout", timeout)),
        )
    except DeliveryError as e:
        raise DeliveryError(secrets.mask(e.message), retryable=e.retryable, retry_after=e.retry_after) from None


# ------------------------------------------------------------------ apprise


def _with_timeouts(url: str, timeout: float) -> str:
    """apprise's own connect/read timeouts (cto/rto), unless the URL sets them."""
    query = dict(parse_qsl(urlsplit(url).query))
    extra = [f"{k}={timeout:g}" for k in ("cto", "rto") if k not in query]
    if not extra:
        return url
    return url + ("&" if "?" in url else "?") + "&".join(extra)


def send_apprise(spec: Any, msg: Delivery) -> str:
    import apprise

    where = f"apprise channel {spec.name}"
    secrets = _Secrets(f"channel {spec.name}")
    url = _with_timeouts(secrets.expand(spec.url) or "", spec.timeout)
    scheme = url.split("://", 1)[0]
    with _apprise_lock:
        box = apprise.Apprise()
        if not box.add(url):
            raise DeliveryError(secrets.mask(f"{where}: apprise does not understand the URL '{url}'"), retryable=False)
        plugin = box[0]
        if isinstance(getattr(plugin, "headers", None), dict):  # json://, form://, xml:// … take headers
            plugin.headers[IDEMPOTENCY_HEADER] = msg.key
        # Chat apps have no headers; the key goes in a last line so people and bots can spot repeats.
        body = f"{msg.body.rstrip()}\n\nref: {msg.key}"
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as logs:
            ok = box.notify(title=msg.subject, body=body)
        log = " ".join(logs.getvalue().split())[-400:]
    if not ok:
        # apprise does not tell a refused message from an unreachable server, so try again.
        raise DeliveryError(secrets.mask(f"{where}: {scheme}:// delivery failed: {log or 'no detail'}"), retryable=True)
    return f"{scheme}:// accepted"


# ------------------------------------------------------------------ dispatch to a channel


class Channels:
    """Delivers rows to the channel definitions of one catalog; one HTTP connection pool for all."""

    def __init__(self, catalog: Any, *, sign_links: Any = None) -> None:
        self.catalog = catalog
        # (Delivery, channel type) -> Delivery with its links signed for its recipient (notify/links.py arm)
        self.sign_links = sign_links
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        with self._lock:  # deliveries run in threads; one pool for all of them
            if self._client is None:
                self._client = httpx.Client(
                    follow_redirects=False,
                    trust_env=False,
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                )
            return self._client

    def spec(self, name: str) -> Any:
        channels = self.catalog.all("channel")
        if name not in channels:
            known = ", ".join(sorted(channels)) or "none defined"
            raise DeliveryError(f"no channel named '{name}' (known: {known})", retryable=False)
        return channels[name]

    def timeout(self, msg: Delivery) -> float:
        if msg.channel.startswith(ACTION_PREFIX):
            return float(msg.payload.get("timeout", 10.0))
        try:
            return float(self.spec(msg.channel).timeout)
        except DeliveryError:
            return 10.0

    def deliver(self, msg: Delivery) -> str:
        if msg.kind == "action" or msg.channel.startswith(ACTION_PREFIX):
            return send_action(self.client, msg)
        spec = self.spec(msg.channel)
        if self.sign_links is not None:
            msg = self.sign_links(msg, spec.type)
        if spec.type == "email":
            return send_email(spec, msg)
        if spec.type == "webhook":
            return send_webhook(self.client, spec, msg)
        if spec.type == "apprise":
            return send_apprise(spec, msg)
        raise DeliveryError(f"channel {msg.channel} has unknown type '{spec.type}'", retryable=False)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

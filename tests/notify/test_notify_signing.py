"""Signed acknowledge/resolve links and webhook signatures."""

import hashlib
import hmac
import os
import stat
import time

import pytest

from metricloop.errors import MetricloopError
from metricloop.notify.signing import (
    secret_key_for,
    sign_action,
    verify_action,
    verify_webhook,
    webhook_headers,
)
from metricloop.settings import Settings
from metricloop.workspace import Workspace


def test_a_signed_link_verifies_and_names_its_incident_and_action():
    token = sign_action(42, "ack", key="k1")
    assert verify_action(token, key="k1") == (42, "ack")
    assert verify_action(token, key="k1", action="ack") == (42, "ack")


def test_a_tampered_link_is_refused():
    token = sign_action(42, "ack", key="k1")
    payload, mac = token.split(".")
    other = sign_action(43, "resolve", key="k1").split(".")[0]
    with pytest.raises(MetricloopError, match="signature is not valid"):
        verify_action(f"{other}.{mac}", key="k1")  # another incident's payload under this mac
    with pytest.raises(MetricloopError, match="signature is not valid"):
        verify_action(token, key="another key")
    with pytest.raises(MetricloopError, match="malformed"):
        verify_action(payload, key="k1")
    with pytest.raises(MetricloopError):
        verify_action(token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"), key="k1")


def test_an_expired_link_is_refused():
    issued = time.time() - 8 * 86400
    token = sign_action(7, "resolve", key="k", ttl_seconds=7 * 86400, now=issued)
    with pytest.raises(MetricloopError, match="expired"):
        verify_action(token, key="k")
    assert verify_action(token, key="k", now=issued + 3600) == (7, "resolve")


def test_an_ack_link_cannot_resolve():
    token = sign_action(7, "ack", key="k")
    with pytest.raises(MetricloopError, match="is for 'ack'"):
        verify_action(token, key="k", action="resolve")


def test_webhook_signature_is_the_documented_hmac():
    body = '{"a":"中文"}'.encode()
    headers = webhook_headers("s3cret", body, "key-1", timestamp=1700000000)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert headers == {
        "X-Metricloop-Idempotency-Key": "key-1",
        "X-Metricloop-Timestamp": "1700000000",
        "X-Metricloop-Signature": f"sha256={expected}",
    }
    assert verify_webhook("s3cret", body, headers, now=1700000010)
    assert not verify_webhook("s3cret", body + b" ", headers, now=1700000010)
    assert not verify_webhook("s3cret", body, headers, now=1700009999)  # replayed much later
    assert "X-Metricloop-Signature" not in webhook_headers(None, body, "key-1")


def test_secret_key_is_created_once_and_private(tmp_path):
    ws = Workspace(tmp_path, Settings(home=tmp_path))
    key = secret_key_for(ws)
    assert len(key) >= 32
    assert secret_key_for(ws) == key
    mode = stat.S_IMODE(os.stat(tmp_path / ".secret_key").st_mode)
    assert mode == 0o600
    configured = Workspace(tmp_path, Settings(home=tmp_path, secret_key="from-settings"))
    assert secret_key_for(configured) == "from-settings"

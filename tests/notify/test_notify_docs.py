"""docs/notifications.md stays true: its receiver snippet verifies real deliveries, its fields exist."""

import re
import ssl
import subprocess
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from metricloop.monitors.schemas import ActionSpec
from metricloop.notify.dispatcher import dispatch_once
from metricloop.notify.schemas import AppriseChannelSpec, EmailChannelSpec, WebhookChannelSpec

DOC = Path(__file__).parents[2] / "docs" / "notifications.md"


def receiver_snippet() -> dict:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Verifying a webhook", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


def test_the_documented_receiver_verifies_a_real_delivery_and_drops_the_repeat(
    make_workspace, receiver, apply_defs, queue, monkeypatch
):
    monkeypatch.setenv("ML_TEST_DOC_SECRET", "doc-secret")
    ws = make_workspace()
    apply_defs(ws, f"""
channels:
  - name: doc_hook
    type: webhook
    url: {receiver.url}/hook
    secret: ${{ML_TEST_DOC_SECRET}}
""")  # fmt: skip
    queue(ws, channel="doc_hook")
    dispatch_once(ws)
    [req] = receiver.requests
    snippet = receiver_snippet()
    assert snippet["verify"]("doc-secret", req.headers, req.body)
    assert not snippet["verify"]("another-secret", req.headers, req.body)
    assert not snippet["verify"]("doc-secret", req.headers, req.body.replace(b"P1", b"P3"))
    assert snippet["receive"]("doc-secret", req.headers, req.body) == 200
    assert snippet["receive"]("doc-secret", req.headers, req.body) == 200  # the repeat is answered, not redone
    assert snippet["handled"] == {req.key}
    assert snippet["receive"]("wrong", req.headers, req.body) == 401


@pytest.mark.parametrize("model", [EmailChannelSpec, WebhookChannelSpec, AppriseChannelSpec, ActionSpec],
                         ids=lambda m: m.__name__)  # fmt: skip
def test_every_channel_and_action_field_is_documented(model):
    doc = DOC.read_text(encoding="utf-8")
    for name, info in model.model_fields.items():
        field = info.alias or name
        assert f"`{field}`" in doc or f"{field}:" in doc, f"{model.__name__}.{field} is not in docs/notifications.md"


def test_an_untrusted_certificate_is_not_retried(make_workspace, apply_defs, queue, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (), {}))  # the handshake fails before any handler
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        ws = make_workspace()
        apply_defs(
            ws,
            f"channels:\n  - {{name: tls_hook, type: webhook, url: 'https://127.0.0.1:{server.server_address[1]}/'}}\n",
        )
        queue(ws, channel="tls_hook")
        assert dispatch_once(ws).dead == 1
    finally:
        server.shutdown()
        server.server_close()
    from sqlalchemy import select

    from metricloop.notify.models import Notification

    with ws.db.session() as s:
        row = s.scalars(select(Notification)).one()
    assert "TLS certificate of https://127.0.0.1" in row.last_error and "is not trusted" in row.last_error

"""HTTP edges of issue 12 point 7: Content-Type, client disconnects, idle and slow clients,
and probes that do not wait behind every evaluation in flight."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from _fakes import FakeEngine, app_with, call, hook_request
from _replay_support import loopback_socket

from cds_service.api.edges import uvicorn_options
from cds_service.record import PatientRecord

SELECT = "/cds-services/SactOrderSelect"
FEEDBACK = SELECT + "/feedback"
FEEDBACK_BODY = (
    b'{"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-23T10:00:00Z"}]}'
)


# -- Content-Type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", None, "application/json; charset=iso-8859-1"],
    ids=["text-plain", "form", "none", "latin-1"],
)
@pytest.mark.parametrize("path", [SELECT, FEEDBACK])
def test_a_post_not_declared_as_json_is_415_with_an_explanation(content_type: str | None, path: str) -> None:
    app, engine, _ = app_with()
    body = FEEDBACK_BODY if path == FEEDBACK else httpx.Request("POST", "/", json=hook_request()).content
    headers = {"Content-Type": content_type} if content_type else {}
    r = call(app, "POST", path, content=body, headers=headers)
    assert r.status_code == 415
    issue = r.json()["issue"][0]
    assert "application/json" in issue["diagnostics"] and issue["code"] == "not-supported"
    assert engine.calls == []


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/fhir+json", "Application/JSON;charset=UTF-8"]
)
def test_json_media_types_with_utf8_are_accepted(content_type: str) -> None:
    app, _, _ = app_with()
    body = httpx.Request("POST", "/", json=hook_request()).content
    assert call(app, "POST", SELECT, content=body, headers={"Content-Type": content_type}).status_code == 200
    assert call(app, "POST", FEEDBACK, content=FEEDBACK_BODY, headers={"Content-Type": content_type}).status_code == 200


# -- client disconnects --------------------------------------------------------------------


def test_a_client_disconnect_mid_body_is_counted_as_such_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, engine, _ = app_with()
    messages = [
        {"type": "http.request", "body": b'{"hook": "order-se', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": SELECT, "raw_path": SELECT.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"testserver")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080),
    }  # fmt: skip
    with caplog.at_level(logging.INFO):
        asyncio.run(app(scope, receive, send))
    metrics = app.state.cds.metrics.render().body.decode()
    assert 'cds_errors_total{kind="client_disconnect"} 1.0' in metrics
    assert 'kind="internal"' not in metrics
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
    assert "Traceback" not in caplog.text and "internal error" not in caplog.text
    assert engine.calls == [] and not any(m["type"] == "http.response.start" for m in sent)


# -- probes under load ----------------------------------------------------------------------


class SlowEngine(FakeEngine):
    """Each evaluation holds the CPU (and so the event loop) for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.started = threading.Event()

    def evaluate(self, service_id: str, record: PatientRecord, now: Any) -> Any:
        self.started.set()
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass
        return super().evaluate(service_id, record, now)


def test_healthz_waits_for_about_one_evaluation_not_for_all_in_flight() -> None:
    engine = SlowEngine(0.15)
    app, _, _ = app_with(engine)
    evaluated_before_probe: list[int] = []

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

            async def hook(n: int) -> None:
                assert (await client.post(SELECT, json=hook_request())).status_code == 200

            async def probe() -> None:
                while not engine.started.is_set():  # the first evaluation has run; the
                    await asyncio.sleep(0)  # other hooks are ready for theirs
                assert (await client.get("/healthz")).status_code == 200
                evaluated_before_probe.append(len(engine.calls))

            await asyncio.gather(*(hook(n) for n in range(8)), probe())

    asyncio.run(run())
    (evaluated,) = evaluated_before_probe
    assert evaluated <= 2, f"/healthz answered after {evaluated} of 8 evaluations"


# -- idle and slow clients, through uvicorn ------------------------------------------------


@contextmanager
def guarded_server(**changes: Any) -> Iterator[tuple[str, int]]:
    app, _, _ = app_with(**changes)
    settings = app.state.cds.settings
    sock = loopback_socket()
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _closed_within(conn: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes ``conn`` (None if still open after ``seconds``),
    sending one byte of ``trickle`` every 0.1 s meanwhile."""
    started = time.monotonic()
    conn.settimeout(0.1)
    while time.monotonic() - started < seconds:
        if trickle:
            try:
                conn.sendall(trickle[:1])
            except OSError:
                return time.monotonic() - started
            trickle = trickle[1:] or b"x"
        try:
            data = conn.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
        if data == b"":
            return time.monotonic() - started
    return None


def test_a_connection_that_sends_nothing_is_closed_after_the_read_timeout() -> None:
    with guarded_server(request_read_timeout_seconds=0.5) as addr, socket.create_connection(addr) as conn:
        closed = _closed_within(conn, 5)
    assert closed is not None and closed < 2


def test_a_request_head_trickled_byte_by_byte_is_cut_off() -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with guarded_server(request_read_timeout_seconds=0.5) as addr, socket.create_connection(addr) as conn:
        closed = _closed_within(conn, 5, trickle=head)
    assert closed is not None and closed < 2


def test_a_body_that_stalls_is_answered_408() -> None:
    head = (
        f"POST {SELECT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    ).encode()
    with guarded_server(request_read_timeout_seconds=0.5) as addr, socket.create_connection(addr) as conn:
        conn.sendall(head + b'{"hook": ')
        conn.settimeout(5)
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408")


def test_keep_alive_still_works_and_an_idle_keep_alive_connection_is_closed() -> None:
    with guarded_server(request_read_timeout_seconds=5, keep_alive_timeout_seconds=0.3) as addr:
        with httpx.Client(base_url=f"http://{addr[0]}:{addr[1]}") as client:
            assert [client.get("/healthz").status_code for _ in range(3)] == [200] * 3
        with socket.create_connection(addr) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            conn.settimeout(5)
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            closed = _closed_within(conn, 4)
    assert closed is not None and closed < 2


def test_serve_runs_uvicorn_with_the_client_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import cds_service.api.app
    import cds_service.api.logging
    from cds_service.api.edges import GuardedH11Protocol
    from cds_service.cli import main

    seen: dict[str, Any] = {}
    monkeypatch.setattr(cds_service.api.logging, "configure_logging", lambda *a, **kw: None)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    monkeypatch.setattr(cds_service.api.app, "tune_gc", lambda: None)  # not in the test process
    monkeypatch.setattr(GuardedH11Protocol, "head_timeout", GuardedH11Protocol.head_timeout)  # restored after
    env = {
        "CDS_DATABASE_URL": "sqlite://",
        "CDS_REQUEST_READ_TIMEOUT_SECONDS": "7",
        "CDS_KEEP_ALIVE_TIMEOUT_SECONDS": "3",
    }
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code == 0, result.output
    assert seen["http"] is GuardedH11Protocol and GuardedH11Protocol.head_timeout == 7.0
    assert seen["timeout_keep_alive"] == 3.0

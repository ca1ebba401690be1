"""Connection edges uvicorn leaves open: clients that connect and send nothing, or trickle.

uvicorn closes a keep-alive connection that stays idle *after* a response
(``timeout_keep_alive``), but a connection that never completes a request head has no
deadline at all, and every byte a trickling client sends cancels the keep-alive timer.
A few hundred such sockets exhaust the process's file descriptors and take ``/healthz``
down with everything else (issue 12). :class:`GuardedH11Protocol` gives every request
head one deadline, counted from the moment the connection opens or the previous response
completes, which data arriving does not extend; past it the connection is closed. The
body has its own deadline in ``hooks.read_json`` (answered 408).

The deadline is a class attribute read from ``CDS_REQUEST_READ_TIMEOUT_SECONDS`` when
the module is imported, because with ``--workers N`` uvicorn builds the protocol in
worker processes that only inherit the environment (``serve`` puts every setting there).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from cds_service.settings import SETTINGS_BY_NAME, Settings

_TIMEOUT = SETTINGS_BY_NAME["request_read_timeout_seconds"]
#: Largest request head uvicorn's h11 parser buffers (its default): the token limit and
#: ordinary headers fit many times over.
MAX_HEAD_BYTES = 16 * 1024


def _env_timeout() -> float:
    try:
        return float(os.environ.get(_TIMEOUT.env, "") or _TIMEOUT.default)
    except ValueError:
        return float(_TIMEOUT.default)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (see the module doc)."""

    head_timeout: float = _env_timeout()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is complete (or the peer errored)
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_deadline()  # the next request head gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        handle = getattr(self, "_head_deadline", None)
        if handle is not None:
            handle.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn ``Config`` options that bound idle and slow clients (for ``serve``)."""
    GuardedH11Protocol.head_timeout = settings.request_read_timeout_seconds
    return {
        "http": GuardedH11Protocol,
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }

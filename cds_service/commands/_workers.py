"""``serve --workers N``: N worker processes, each with its own listening socket
(``SO_REUSEPORT``), so the kernel spreads connections across them.

Why not uvicorn's ``--workers``: its workers share one listening socket and whichever is
awake first accepts; EHRs and load balancers hold keep-alive connections, so with 16
long-lived connections most landed on one worker while the other idled (issue 11: 0.84-1.4x
for 2 workers). With a socket per worker in one ``SO_REUSEPORT`` group the kernel hashes
each new connection to one of the sockets, so connections, and the requests they carry,
are shared out evenly. The knowledge is loaded and checked once in the parent, before
the fork: a bad artifact stops the start, and the workers share the compiled rules'
memory pages until they write to them.

The parent only supervises: a worker that dies is started again; SIGTERM/SIGINT stop every
worker (each finishes its requests: uvicorn's graceful shutdown) and then the parent.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

log = logging.getLogger("sact_cds.serve")

#: A worker that dies sooner than this after its start is not restarted again and again.
_MIN_UPTIME_S = 5.0


def reuseport_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket in the ``SO_REUSEPORT`` group of ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _worker(make_app: Callable[[], Any], host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own graceful handlers
    sock = listening_socket(host, port)
    config = uvicorn.Config(make_app(), host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(make_app: Callable[[], Any], workers: int, host: str, port: int, **options: Any) -> int:
    """Run ``workers`` processes serving ``make_app()`` (called in each worker, after the
    fork) on ``host:port``; returns when they have all stopped (exit status 0, or 1 if a
    worker could not stay up)."""
    if port == 0:
        raise ValueError("--workers > 1 needs a fixed --port (each worker binds it)")
    ctx = multiprocessing.get_context("fork")
    procs: dict[int, tuple[Any, float]] = {}
    stopping = False
    failed = False

    def start(slot: int) -> None:
        proc = ctx.Process(target=_worker, args=(make_app, host, port, options), name=f"cds-worker-{slot}")
        proc.start()
        procs[slot] = (proc, time.monotonic())

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for proc, _ in procs.values():
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(workers):
            start(slot)
        log.info("serving on %s:%d with %d worker processes (SO_REUSEPORT)", host, port, workers)
        while procs:
            wait([p.sentinel for p, _ in procs.values()], timeout=1.0)
            for slot, (proc, started) in list(procs.items()):
                if proc.is_alive():
                    continue
                proc.join()
                del procs[slot]
                if stopping:
                    continue
                if time.monotonic() - started < _MIN_UPTIME_S:
                    log.error("worker %d exited with %s right after starting; stopping", slot, proc.exitcode)
                    failed = True
                    stop(signal.SIGTERM, None)
                    continue
                log.warning("worker %d exited with %s; starting it again", slot, proc.exitcode)
                start(slot)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed else 0

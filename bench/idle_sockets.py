"""``python -m bench.idle_sockets``: does /healthz survive idle sockets under a 1,024 fd limit?

Starts ``cds-service serve`` with its open-file limit set to 1,024 and
``request_read_timeout_seconds`` = ``--timeout``, opens ``--sockets`` connections that
never send a byte (issue 12: 1,100 of them took /healthz down), then probes /healthz on a
new connection every 0.5 s for ``--watch`` seconds and prints when it answers and how many
of the idle sockets the server has closed. Numbers only.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import tempfile
import time
from pathlib import Path

import httpx

from bench import servers


def _limit_fds() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1100)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--watch", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir, port = Path(tmp), servers.free_port()
        env = servers.service_env(workdir, {"CDS_REQUEST_READ_TIMEOUT_SECONDS": str(args.timeout)})
        import subprocess

        log = workdir / "serve.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [*servers.serve_command(), "--port", str(port)], env=env, stdout=sink,
                stderr=subprocess.STDOUT, preexec_fn=_limit_fds, start_new_session=True,
            )  # fmt: skip
        server = servers.Server("serve", proc, port, log, time.perf_counter())
        idle: list[socket.socket] = []
        try:
            servers.wait_ready(server, "/healthz")
            opened = time.perf_counter()
            for _ in range(args.sockets):
                try:
                    idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
                except OSError:
                    break
            print(f"opened {len(idle)} idle sockets in {time.perf_counter() - opened:.1f} s "
                  f"(server fd limit 1024, head deadline {args.timeout:g} s)")  # fmt: skip
            until = time.perf_counter() + args.watch
            while time.perf_counter() < until:
                t = time.perf_counter()
                try:
                    status = str(httpx.get(server.url + "/healthz", timeout=1.0).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                closed = sum(1 for s in idle if _closed(s))
                print(f"  t={t - opened:4.1f} s  /healthz: {status:<14} "
                      f"({(time.perf_counter() - t) * 1000:.0f} ms)  idle sockets closed by the server: {closed}")  # fmt: skip
                time.sleep(0.5)
        finally:
            for s in idle:
                s.close()
            servers.stop(server)
    return 0


def _closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())

"""``cds-service serve --workers 2``: two worker processes, each with its own listening
socket (SO_REUSEPORT), and both answer: connections are spread across them by the kernel
instead of piling onto whichever worker accepts first (issue 11)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cds_service.commands._workers import reuseport_supported

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    not reuseport_supported() or not Path("/proc/net/tcp").exists(), reason="needs Linux SO_REUSEPORT and /proc"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    exe = shutil.which("cds-service")
    argv = [exe] if exe else [sys.executable, "-c", "from cds_service.cli import main; main()"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_DATA_DIR=str(tmp_path), CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'audit.sqlite'}",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p))
    proc = subprocess.Popen([*argv, "serve", "--workers", "2", "--port", str(port)], env=env, cwd=tmp_path,  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200 and \
                        len(_children(proc.pid)) == 2:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def _server_side_owner(port: int, client_port: int, pids: list[int]) -> int:
    """The worker process holding the server end of the connection from ``client_port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == client_port:
            inode = fields[9]
    assert inode is not None, "connection not found in /proc/net/tcp"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError("no worker holds the connection")


def test_two_workers_start_and_both_answer_keep_alive_connections(served) -> None:
    proc, port = served
    workers = _children(proc.pid)
    assert len(workers) == 2
    owners: list[int] = []
    conns = []
    for _ in range(16):  # 16 keep-alive connections, each asked twice
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        conns.append(conn)
        for _ in range(2):
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = b""
            while not reply.endswith(b'{"status":"ok"}'):
                chunk = conn.recv(65536)
                assert chunk, reply
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
        owners.append(_server_side_owner(port, conn.getsockname()[1], workers))
    for conn in conns:
        conn.close()
    assert set(owners) == set(workers)  # both processes answer
    assert min(owners.count(w) for w in workers) >= 2  # and share them (16 hashed over 2; P(fewer) < 0.1 %)


def test_sigterm_stops_every_worker(served) -> None:
    proc, _ = served
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stdout.read().decode() if proc.stdout else ""
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()

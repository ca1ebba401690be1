"""Server processes for the HTTP measurements: start on a free loopback port, wait until
ready, always stop. Nothing here binds anything but 127.0.0.1.

- the service: ``cds-service serve --workers N --port P`` (the documented command: one
  worker in the process, or N forked workers with a listening socket each), settings from
  ``CDS_*`` with their defaults (log level INFO, as shipped), audit store in a temporary
  SQLite file, no trusted issuers (unauthenticated is allowed on loopback only: settings.py);
- the floor: ``python -m bench.floor_app --port P --workers N``, served the same way, with
  the same uvicorn options and the service's garbage-collector set-up (issue 11);
- the slow FHIR endpoint: ``uvicorn bench.fhir_stub:app_from_env --factory``;
- cold start: ``cds-service serve`` itself (the documented command).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
UVICORN_OPTIONS = ("--no-access-log", "--no-server-header", "--log-level", "warning")


class ServerFailed(RuntimeError):
    """A server process did not become ready; the message ends with its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server process (and its log file)."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def pids(self) -> list[int]:
        """The process and its children (uvicorn workers)."""
        return [self.proc.pid, *_children(self.proc.pid)]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by every process of the server."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return total / tick

    def rss_kib(self) -> dict[int, int]:
        """VmRSS of every process of the server, KiB."""
        return {pid: rss for pid in self.pids() if (rss := vm_rss_kib(pid)) is not None}

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            out.append(int(kid))
            out.extend(_children(int(kid)))
    return out


def vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def service_env(workdir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``CDS_*`` for a benchmark server: temporary SQLite audit store, loopback, defaults
    otherwise (so the numbers are those of the service as shipped)."""
    # PYTHONDONTWRITEBYTECODE dropped: an installed service has its modules compiled, so
    # start-up should not pay for compiling them again on every start
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        CDS_HOST=HOST,
        CDS_DATA_DIR=str(workdir),
        CDS_DATABASE_URL=f"sqlite:///{workdir / 'audit.sqlite'}",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("BENCH_EXTRA_PATH", ""), env.get("PYTHONPATH", "")) if p),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def _spawn(name: str, argv: Sequence[str], env: Mapping[str, str], workdir: Path, port: int) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            list(argv), cwd=ROOT, env=dict(env), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(name, proc, port, log, time.perf_counter())


def uvicorn_argv(app: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, "--factory", "--host", HOST, "--port", str(port),
            "--workers", str(workers), *UVICORN_OPTIONS]  # fmt: skip


def wait_ready(server: Server, path: str = "/readyz", timeout: float = 60.0) -> float:
    """Seconds from spawn until ``GET path`` answers 200; ServerFailed past ``timeout``."""
    deadline = time.perf_counter() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if server.proc.poll() is not None:
                raise ServerFailed(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
            try:
                if client.get(server.url + path).status_code == 200:
                    return time.perf_counter() - server.started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise ServerFailed(f"{server.name} not ready within {timeout:g} s:\n{server.log_tail()}")


def stop(server: Server, timeout: float = 10.0) -> None:
    """SIGTERM the server's process group (uvicorn and its workers), SIGKILL if it lingers."""
    if server.proc.poll() is None:
        try:
            os.killpg(server.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(server.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            server.proc.wait(timeout)


@contextmanager
def running(name: str, argv: Sequence[str], env: Mapping[str, str], workdir: Path, port: int,
            ready_path: str = "/readyz") -> Iterator[Server]:  # fmt: skip
    server = _spawn(name, argv, env, workdir, port)
    try:
        wait_ready(server, ready_path)
        yield server
    finally:
        stop(server)


@contextmanager
def service(workdir: Path, workers: int = 1, extra_env: Mapping[str, str] | None = None) -> Iterator[Server]:
    port = free_port()
    argv = [*serve_command(), "--port", str(port), "--workers", str(workers)]
    with running(f"service-w{workers}", argv, service_env(workdir, extra_env), workdir, port) as server:
        yield server


@contextmanager
def floor(workdir: Path, workers: int = 1) -> Iterator[Server]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.floor_app", "--port", str(port), "--workers", str(workers)]
    with running(f"floor-w{workers}", argv, service_env(workdir), workdir, port) as server:
        yield server


@contextmanager
def fhir_stub(workdir: Path, data_file: Path, delay: float) -> Iterator[Server]:
    port = free_port()
    argv = uvicorn_argv("bench.fhir_stub:app_from_env", port, 1)
    env = service_env(workdir, {"BENCH_FHIR_DATA": str(data_file), "BENCH_FHIR_DELAY": str(delay)})
    with running("fhir-stub", argv, env, workdir, port, ready_path="/_bench/stats") as server:
        yield server


def serve_command() -> list[str]:
    """``cds-service serve`` (the console script, or the module if it is not on PATH)."""
    exe = shutil.which("cds-service")
    if exe:
        return [exe, "serve"]
    return [sys.executable, "-c", "from cds_service.cli import main; main()", "serve"]


def spawn_serve(workdir: Path, port: int) -> Server:
    """``cds-service serve --port P`` with a temporary audit store, for cold start."""
    return _spawn("serve", [*serve_command(), "--port", str(port)], service_env(workdir), workdir, port)

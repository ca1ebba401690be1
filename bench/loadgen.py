"""The load generator: ``wrk`` (Debian package ``wrk``) at fixed concurrency, POSTing a
hook body through a Lua script, with its ``--latency`` distribution parsed for p50/p99.

If wrk is not installed the HTTP parts are skipped with a message saying how to install
it (``apt-get install -y wrk``); the benchmark still exits 0.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = "install the load generator with `apt-get install -y wrk` (Debian/Ubuntu) and run again"

#: wrk -s script: POST the body file to the URL. The body path is filled in when written.
POST_LUA = """-- written by bench/loadgen.py: POST one CDS Hooks request body
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*a")
f:close()
"""

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str | None:
    exe = wrk_path()
    if not exe:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    text = (out.stdout or out.stderr).strip()
    return " ".join(text.split()[:2]) if text else "wrk"  # "wrk debian/4.1.0-3+b2"


#: wrk -s script: POST one of several bodies, each to its path, drawn at random by share.
MIX_LUA = """-- written by bench/loadgen.py: a mixed workload, each request drawn by share
local parts = {parts}
local requests, cumulative = {}, {}
local total = 0
function init(args)
  -- built here, not at load: wrk sets the Host header only once the thread is set up
  local headers = {["Content-Type"] = "application/json", ["Accept"] = "application/json",
                   ["Host"] = wrk.headers["Host"]}
  for i, p in ipairs(parts) do
    local f = assert(io.open(p[3], "rb"))
    local body = f:read("*a")
    f:close()
    requests[i] = wrk.format("POST", p[2], headers, body)
    total = total + p[1]
    cumulative[i] = total
  end
  math.randomseed(os.time())
end
function request()
  local r = math.random() * total
  for i, c in ipairs(cumulative) do
    if r <= c then return requests[i] end
  end
  return requests[#requests]
end
"""


def write_mix_script(workdir: Path, parts: list[tuple[float, str, bytes]], name: str) -> Path:
    """A wrk script sending ``(share, path, body)`` parts at random by share."""
    rows = []
    for n, (share, path, body) in enumerate(parts):
        body_file = workdir / f"{name}-{n}.json"
        body_file.write_bytes(body)
        rows.append(f'{{{share!r}, "{path}", "{body_file}"}}')
    script = workdir / f"{name}.mix.lua"
    script.write_text(MIX_LUA.replace("{parts}", "{" + ", ".join(rows) + "}"), encoding="utf-8")
    return script


def write_post_script(workdir: Path, body: bytes, name: str) -> Path:
    body_file = workdir / f"{name}.json"
    body_file.write_bytes(body)
    script = workdir / f"{name}.post.lua"
    script.write_text(POST_LUA.replace("{body}", str(body_file)), encoding="utf-8")
    return script


@dataclass
class LoadResult:
    """One wrk run: latency percentiles (ms), throughput, and what went wrong."""

    url: str
    concurrency: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.non_2xx == 0 and self.socket_errors == 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"cannot read wrk time {text!r}")
    return float(m[1]) * _UNITS[m[2]]


def parse_wrk(output: str, url: str, concurrency: int, seconds: float) -> LoadResult:
    """Read wrk's report (with ``--latency``)."""
    pct = {p: _ms(v) for p, v in re.findall(r"^\s*(50|75|90|99)%\s+(\S+)\s*$", output, re.M)}
    lat = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
    done = re.search(r"(\d+) requests in", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if not (pct and lat and done and rps):
        raise ValueError("unexpected wrk output:\n" + output)
    return LoadResult(
        url=url, concurrency=concurrency, seconds=seconds, requests=int(done[1]), rps=float(rps[1]),
        p50_ms=pct["50"], p75_ms=pct["75"], p90_ms=pct["90"], p99_ms=pct["99"],
        mean_ms=_ms(lat[1]), max_ms=_ms(lat[3]),
        non_2xx=int(non2xx[1]) if non2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
    )  # fmt: skip


def run_wrk(url: str, script: Path, *, concurrency: int, seconds: float, threads: int = 1,
            timeout_s: float = 10.0) -> LoadResult:  # fmt: skip
    """One bounded wrk run against a loopback URL."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError("the benchmark only loads loopback servers")
    exe = wrk_path()
    if exe is None:
        raise FileNotFoundError("wrk")
    argv = [exe, f"-t{threads}", f"-c{concurrency}", f"-d{seconds:g}s", f"--timeout={timeout_s:g}s",
            "--latency", "-s", str(script), url]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 30, check=False)  # noqa: S603
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    return parse_wrk(out.stdout, url, concurrency, seconds)

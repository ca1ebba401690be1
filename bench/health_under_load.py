"""``python -m bench.health_under_load``: /healthz and /readyz latency under a hook load.

Starts ``cds-service serve`` (one worker, temporary SQLite store), keeps ``--concurrency``
keep-alive wrk connections posting order-sign for a 500-resource synthetic patient, and probes
/healthz and /readyz every 100 ms on a NEW connection each time (as an orchestrator's
probe does). Prints probe latency p50/p99/max and the hook throughput. Numbers only:
issue 12 asks for probes within 1 s at p99 under c=16.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import loadgen, servers
from bench.inprocess import percentile
from bench.synth import hook_request, make_patient


def _probe(url: str, until: float, out: list[float]) -> None:
    while time.perf_counter() < until:
        t = time.perf_counter()
        with httpx.Client(timeout=30) as client:  # a new connection per probe
            resp = client.get(url)
        out.append(time.perf_counter() - t)
        if resp.status_code != 200:
            raise RuntimeError(f"{url} answered {resp.status_code}")
        time.sleep(0.1)


def _run(base: str, script: Path, concurrency: int, seconds: float) -> tuple[Any, dict[str, list[float]]]:
    """wrk keeps the hook load (its own process, so it never delays our probes); two threads
    probe /healthz and /readyz meanwhile, starting a second into the load."""
    probes: dict[str, list[float]] = {"healthz": [], "readyz": []}
    with ThreadPoolExecutor(3) as pool:
        load = pool.submit(
            loadgen.run_wrk, base + "/cds-services/SactOrderSign", script, concurrency=concurrency, seconds=seconds
        )
        time.sleep(1.0)
        until = time.perf_counter() + seconds - 2.0
        for name in probes:
            pool.submit(_probe, f"{base}/{name}", until, probes[name])
        return load.result(), probes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--size", type=int, default=500)
    args = parser.parse_args()
    from cds_service.engine import Engine
    from cds_service.knowledge import load_knowledge

    templates = {s.id: dict(s.prefetch) for s in Engine(load_knowledge()).services}
    patient = make_patient(args.size)
    body = orjson.dumps(hook_request(patient, "order-sign", templates["SactOrderSign"]))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = servers.free_port()
        server = servers.spawn_serve(workdir, port)
        try:
            servers.wait_ready(server)
            script = loadgen.write_post_script(workdir, body, "order-sign")
            load, probes = _run(server.url, script, args.concurrency, args.seconds)
        finally:
            servers.stop(server)
    print(f"c={args.concurrency} order-sign load (wrk), {args.size}-resource patient, {args.seconds:g} s")
    print(f"  hooks: {load.rps:.1f}/s, p50 {load.p50_ms:.0f} ms, p99 {load.p99_ms:.0f} ms, "
          f"non-2xx {load.non_2xx}")  # fmt: skip
    for name, values in probes.items():
        print(f"  /{name}: {len(values)} probes, p50 {percentile(values, 50) * 1000:.0f} ms, "
              f"p99 {percentile(values, 99) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The measurements that need running servers (issue 6, parts 2-5).

- ``http_runs``: wrk at fixed concurrency against the service and, in the same run, the
  bare-framework floor (``bench/floor_app.py``), 1 and 2 workers, order-select, an
  order-select no rule is about, and order-sign, prefetch present; the ratio
  service/floor is the tracked figure; with 1 worker also the steps the service timed;
- ``mixed``: an EHR-like mix of those requests (``MIX``), throughput and p99;
- ``fallback``: prefetch absent, data from a local FHIR endpoint that answers each call
  after an injected delay; total hook latency against that delay, calls made, and the
  most calls in flight at once (concurrent fetches);
- ``cold_start``: ``cds-service serve`` from process start to the first answered hook,
  and resident memory (VmRSS) after warm-up.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import loadgen, servers
from bench.inprocess import HOOKS, percentile
from bench.synth import SyntheticPatient, hook_request, irrelevant_request

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
Say = Callable[[str], None]
#: What the HTTP runs send: (label, service id, hook); "irrelevant" is an order-select for an
#: order no rule is about (paracetamol, no inotuzumab drafted), answered by the relevance gate.
IRRELEVANT = "order-select, irrelevant"
KINDS = (("order-select", "SactOrderSelect", "order-select"), (IRRELEVANT, "SactOrderSelect", "order-select"),
         ("order-sign", "SactOrderSign", "order-sign"))
#: Audit rows read back at most (a full run writes several thousand; the count must not cap)
_AUDIT_LIMIT = 200_000
#: Steps the service times in itself (audit ``timings_ms``), in request order.
STEPS = ("auth", "read", "parse", "validate", "fetch", "gate", "record", "features", "rules", "render")


def bodies_for(patient: SyntheticPatient, templates: dict[str, dict[str, str]]) -> dict[str, bytes]:
    """The request body of each kind (KINDS)."""
    return {label: orjson.dumps(irrelevant_request(patient, templates[sid]) if label == IRRELEVANT
                                else hook_request(patient, hook, templates[sid]))
            for label, sid, hook in KINDS}  # fmt: skip


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure's median over the runs (the runs kept under ``runs``)."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = statistics.median(r[key] for r in runs)
    out["runs"] = [{k: r[k] for k in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request")} for r in runs]
    return out


def server_steps(workdir: Path, since: int) -> dict[str, Any]:
    """p50 of each step the service timed for the invocations after the ``since`` newest
    (read back from its audit store), and of its own latency (start of the handler to the
    response built)."""
    from cds_service.store import AuditStore

    time.sleep(0.5)  # the audit rows are written after the responses
    store = AuditStore(f"sqlite:///{workdir / 'audit.sqlite'}")
    try:
        rows = store.recent(_AUDIT_LIMIT)[0]
    finally:
        store.close()
    rows = rows[: max(0, len(rows) - since)]
    out: dict[str, Any] = {"n": len(rows)}
    for step in STEPS:
        values = [r["timings_ms"][step] for r in rows if step in (r.get("timings_ms") or {})]
        if values:
            out[step] = round(statistics.median(values), 3)
    lat = [r["latency_ms"] for r in rows if r.get("latency_ms") is not None]
    if lat:
        out["handler"] = round(statistics.median(lat), 3)
    return out


def _audit_count(workdir: Path) -> int:
    from cds_service.store import AuditStore

    time.sleep(0.5)
    store = AuditStore(f"sqlite:///{workdir / 'audit.sqlite'}")
    try:
        return len(store.recent(_AUDIT_LIMIT)[0])
    finally:
        store.close()


def _check(url: str, body: bytes) -> dict[str, Any]:
    """One request before loading a server: it must answer 200 with cards."""
    resp = httpx.post(url, content=body, headers=JSON_HEADERS, timeout=60)
    if resp.status_code != 200:
        raise RuntimeError(f"{url} answered {resp.status_code}: {resp.text[:300]}")
    return resp.json()


def http_runs(
    workdir: Path,
    patient: SyntheticPatient,
    templates: dict[str, dict[str, str]],
    *,
    workers: Sequence[int] = (1, 2),
    concurrency: int = 16,
    seconds: float = 8.0,
    warmup_s: float = 2.0,
    single_seconds: float = 4.0,
    repeat: int = 2,
    say: Say = print,
) -> list[dict[str, Any]]:
    """Service and floor, side by side in the same run, for each worker count and kind,
    ``repeat`` runs each, alternating (the median of each figure is kept, the runs too);
    with one worker also one request at a time (``single_seconds`` per run, 0 to skip) and
    the steps the service timed in itself."""
    bodies = bodies_for(patient, templates)
    scripts = {label: loadgen.write_post_script(workdir, body, f"{label.replace(', ', '-')}-{patient.size}")
               for label, body in bodies.items()}  # fmt: skip
    rows: list[dict[str, Any]] = []
    for n in workers:
        with servers.service(workdir, n) as service, servers.floor(workdir, n) as floor:
            for label, sid, _ in KINDS:
                row: dict[str, Any] = {"size": patient.size, "workers": n, "hook": label, "service": sid,
                                       "concurrency": concurrency, "body_bytes": len(bodies[label])}  # fmt: skip
                pair = {"service": service, "floor": floor}
                for server in pair.values():
                    url = f"{server.url}/cds-services/{sid}"
                    _check(url, bodies[label])
                    loadgen.run_wrk(url, scripts[label], concurrency=concurrency, seconds=warmup_s)
                before = _audit_count(workdir) if n == 1 else 0
                row.update(_side_by_side(pair, f"/cds-services/{sid}", scripts[label], concurrency=concurrency,
                                         seconds=seconds, repeat=repeat, say=say, what=f"http {label} workers={n}"))
                if n == 1:
                    row["steps"] = server_steps(workdir, before)
                if n == 1 and single_seconds > 0:
                    # one request at a time: the latency one clinician's hook sees, no queueing
                    row["single"] = {}
                    for name, server in (("service", service), ("floor", floor)):
                        url = f"{server.url}/cds-services/{sid}"
                        result = loadgen.run_wrk(url, scripts[label], concurrency=1, seconds=single_seconds)
                        row["single"][name] = result.as_json()
                        say(f"  http {label} workers=1 c=1 {name}: p50 {result.p50_ms:.1f} ms, "
                            f"p99 {result.p99_ms:.1f} ms")
                row["ratio_p50"] = round(row["service"]["p50_ms"] / row["floor"]["p50_ms"], 2)
                rows.append(_with_ratios(row))
            row_rss = service.rss_kib()
            for row in rows:
                if row["workers"] == n:
                    row["service_rss_mib"] = round(sum(row_rss.values()) / 1024, 1)
                    row["service_processes"] = len(row_rss)
    return rows


#: The mixed workload (issue 11): what an EHR sends, by share of requests.
MIX = ((0.90, IRRELEVANT), (0.08, "order-select"), (0.02, "order-sign"))


def mixed(
    workdir: Path,
    patient: SyntheticPatient,
    templates: dict[str, dict[str, str]],
    *,
    workers: Sequence[int] = (1, 2),
    concurrency: int = 16,
    seconds: float = 8.0,
    warmup_s: float = 2.0,
    repeat: int = 2,
    say: Say = print,
) -> list[dict[str, Any]]:
    """wrk sending the MIX (each request drawn at random by share) to the service and to the
    floor (same bodies), for each worker count: throughput, p50, p99."""
    bodies = bodies_for(patient, templates)
    sid_of = {label: sid for label, sid, _ in KINDS}
    parts = [(share, f"/cds-services/{sid_of[label]}", bodies[label]) for share, label in MIX]
    script = loadgen.write_mix_script(workdir, parts, f"mix-{patient.size}")
    out: list[dict[str, Any]] = []
    for n in workers:
        row: dict[str, Any] = {"workers": n, "size": patient.size, "concurrency": concurrency,
                               "mix": {label: share for share, label in MIX}}  # fmt: skip
        with servers.service(workdir, n) as service, servers.floor(workdir, n) as floor:
            pair = {"service": service, "floor": floor}
            for server in pair.values():
                for _, path, body in parts:
                    _check(server.url + path, body)
                loadgen.run_wrk(server.url + "/", script, concurrency=concurrency, seconds=warmup_s)
            row.update(_side_by_side(pair, "/", script, concurrency=concurrency, seconds=seconds, repeat=repeat,
                                     say=say, what=f"mixed workers={n}"))
        out.append(_with_ratios(row))
    return out


def _side_by_side(pair: dict[str, servers.Server], path: str, script: Path, *, concurrency: int, seconds: float,
                  repeat: int, say: Say, what: str) -> dict[str, dict[str, Any]]:
    """``repeat`` wrk runs of ``script`` against each server of ``pair`` (service, floor),
    alternating so both see the same machine; per server the median of each figure (the
    runs kept too), with the CPU each request cost all processes of the server: robust to a
    loaded machine, where throughput also measures what else is running."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in pair}
    for rep in range(repeat):
        for name in ("service", "floor") if rep % 2 == 0 else ("floor", "service"):
            server = pair[name]
            cpu0 = server.cpu_seconds()
            result = loadgen.run_wrk(server.url + path, script, concurrency=concurrency, seconds=seconds)
            run = result.as_json()
            run["cpu_ms_per_request"] = round((server.cpu_seconds() - cpu0) * 1000 / max(result.requests, 1), 2)
            runs[name].append(run)
            say(f"  {what} {name} (run {rep + 1}/{repeat}): p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
                f"{result.rps:.1f} req/s, CPU {run['cpu_ms_per_request']} ms/request"
                + ("" if result.ok else f" [{result.non_2xx} non-2xx, {result.socket_errors} socket errors]"))  # fmt: skip
    return {name: _median_run(r) for name, r in runs.items()}


def _with_ratios(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with service / floor ratios of throughput, p99 and CPU per request."""
    row["ratio_rps"] = round(row["service"]["rps"] / row["floor"]["rps"], 3)
    row["ratio_p99"] = round(row["service"]["p99_ms"] / row["floor"]["p99_ms"], 2)
    row["ratio_cpu"] = round(row["service"]["cpu_ms_per_request"] / max(row["floor"]["cpu_ms_per_request"], 0.01), 2)
    return row


def _timed_calls(url: str, bodies: Sequence[bytes], client: httpx.Client) -> list[float]:
    out = []
    for body in bodies:
        t0 = time.perf_counter()
        resp = client.post(url, content=body, headers=JSON_HEADERS)
        out.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise RuntimeError(f"fallback call answered {resp.status_code}: {resp.text[:300]}")
    return out


def fallback(
    workdir: Path,
    patient: SyntheticPatient,
    templates: dict[str, str],
    *,
    delay_s: float = 0.05,
    calls: int = 20,
    concurrency_settings: Sequence[int | None] = (None,),
    say: Say = print,
) -> list[dict[str, Any]]:
    """Sequential order-select calls without prefetch; the service fetches from the stub.

    ``concurrency_settings``: values of ``CDS_FETCH_CONCURRENCY`` to run with (None =
    the service's default)."""
    data_file = workdir / f"fhir-{patient.size}.json"
    data_file.write_bytes(orjson.dumps(patient.resources))
    sid, hook = HOOKS[0]
    out: list[dict[str, Any]] = []
    with servers.fhir_stub(workdir, data_file, delay_s) as stub:
        for setting in concurrency_settings:
            extra = {} if setting is None else {"CDS_FETCH_CONCURRENCY": str(setting)}
            # the site lists its FHIR server (here the loopback stub): loopback is refused otherwise
            extra["CDS_FHIR_SERVER_ALLOWLIST"] = stub.url
            extra["CDS_ALLOW_HTTP_FHIR_SERVER"] = "true"
            with servers.service(workdir, 1, extra) as service, httpx.Client(timeout=60) as client:
                url = f"{service.url}/cds-services/{sid}"
                with_prefetch = [orjson.dumps(hook_request(patient, hook, templates)) for _ in range(calls)]
                without = [orjson.dumps(hook_request(patient, hook, None, fhir_server=stub.url)) for _ in range(calls)]
                _timed_calls(url, with_prefetch[:3] + without[:3], client)  # warm-up
                base = _timed_calls(url, with_prefetch, client)
                client.post(f"{stub.url}/_bench/reset")
                times = _timed_calls(url, without, client)
                stats = client.get(f"{stub.url}/_bench/stats").json()
            p50 = statistics.median(times)
            row = {
                "size": patient.size, "hook": hook, "delay_ms": delay_s * 1000, "calls": calls,
                "fetch_concurrency": setting if setting is not None else "default",
                "prefetch_keys": len(templates),
                "fhir_calls_per_hook": round(stats["calls"] / calls, 2),
                "max_in_flight": stats["max_in_flight"],
                "p50_ms": round(p50, 1), "p99_ms": round(percentile(times, 99), 1),
                "with_prefetch_p50_ms": round(statistics.median(base), 1),
                "ratio_to_delay": round(p50 / (delay_s * 1000), 2),
            }  # fmt: skip
            say(f"  fallback fetch_concurrency={row['fetch_concurrency']}: p50 {row['p50_ms']} ms "
                f"({row['ratio_to_delay']} x {delay_s * 1000:g} ms), {row['fhir_calls_per_hook']} FHIR calls per hook, "
                f"at most {row['max_in_flight']} at once")  # fmt: skip
            out.append(row)
    return out


def cold_start(
    workdir: Path,
    patient: SyntheticPatient,
    templates: dict[str, str],
    *,
    runs: int = 3,
    warm_calls: int = 50,
    timeout_s: float = 60.0,
    say: Say = print,
) -> dict[str, Any]:
    """``cds-service serve``: seconds from spawn to the first hook answered 200; VmRSS."""
    sid, hook = HOOKS[0]
    body = orjson.dumps(hook_request(patient, hook, templates))
    starts: list[float] = []
    rss_first: list[float] = []
    rss_warm: list[float] = []
    for _ in range(runs):
        port = servers.free_port()
        server = servers.spawn_serve(workdir, port)
        try:
            url = f"http://{servers.HOST}:{port}/cds-services/{sid}"
            deadline = server.started + timeout_s
            with httpx.Client(timeout=30) as client:
                while True:
                    if server.proc.poll() is not None:
                        raise servers.ServerFailed(f"serve exited {server.proc.returncode}:\n{server.log_tail()}")
                    if time.perf_counter() > deadline:
                        raise servers.ServerFailed(f"serve not answering within {timeout_s:g} s:\n{server.log_tail()}")
                    try:
                        resp = client.post(url, content=body, headers=JSON_HEADERS)
                        if resp.status_code == 200:
                            starts.append(time.perf_counter() - server.started)
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.01)
                rss_first.append(sum(server.rss_kib().values()) / 1024)
                for _ in range(warm_calls):
                    client.post(url, content=body, headers=JSON_HEADERS)
                rss_warm.append(sum(server.rss_kib().values()) / 1024)
        finally:
            servers.stop(server)
    result = {
        "command": " ".join([*servers.serve_command(), "--port", "<free port>"]),
        "runs": runs, "seconds": [round(s, 3) for s in starts], "p50_s": round(statistics.median(starts), 3),
        "rss_first_mib": round(statistics.median(rss_first), 1),
        "rss_warm_mib": round(statistics.median(rss_warm), 1), "warm_calls": warm_calls, "size": patient.size,
    }  # fmt: skip
    say(f"  cold start: {result['p50_s']} s to the first answered hook; RSS {result['rss_warm_mib']} MiB after "
        f"{warm_calls} calls")  # fmt: skip
    return result

"""The results as a rich table on the terminal, JSON, and the "Performance" document (docs/performance.md)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.servers import ROOT

TARGET_SIZE = 500
GROWTH_TOLERANCE = 1.05  # a log-log slope up to this counts as linear (timing noise)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""

    def read(path: str, key: str) -> str | None:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip('"')
        except OSError:
            return None
        return None

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    mem = read("/proc/meminfo", "MemTotal")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=False).stdout.strip() or None  # fmt: skip
    except OSError:
        commit = None
    return {
        "cpu": read("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.split()[0]) / 1024 / 1024, 1) if mem else None,
        "os": read("/etc/os-release", "PRETTY_NAME") or platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {d: version(d) for d in ("fastapi", "starlette", "uvicorn", "orjson", "fhirpathpy", "httptools", "uvloop")},
        "wrk": loadgen.wrk_version(),
        "bytecode_cache": "on for the servers (PYTHONDONTWRITEBYTECODE is not passed on)",
        "commit": commit,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": " ".join(["python", "-m", "bench", *sys.argv[1:]]),
    }


# ---------------------------------------------------------------------------------- targets


def _row(results: dict[str, Any], hook: str, workers: int = 1) -> dict[str, Any] | None:
    for r in results.get("http", []):
        if r["size"] == TARGET_SIZE and r["workers"] == workers and r["hook"] == hook:
            return r
    return None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target (issues 6 and 11) with the measured value and whether it is met (None:
    not run). Every HTTP ratio is to the fair floor measured in the same run."""
    rows: list[dict[str, Any]] = []
    sign, irrelevant = _row(results, "order-sign"), _row(results, "order-select, irrelevant")
    if sign:
        rows.append(_t("order-sign p50 / floor p50, c=16, 1 worker", "<= 1.5",
                       f"{sign['ratio_p50']:.2f} ({sign['service']['p50_ms']:.1f} / {sign['floor']['p50_ms']:.1f} ms)",
                       sign["ratio_p50"] <= 1.5))  # fmt: skip
        if "ratio_cpu" in sign:
            rows.append(_t("order-sign CPU per request / floor's, c=16, 1 worker", "(reported)",
                           f"{sign['ratio_cpu']:.2f} ({sign['service']['cpu_ms_per_request']:.2f} / "
                           f"{sign['floor']['cpu_ms_per_request']:.2f} ms)", "no target"))  # fmt: skip
        rows.append(_t("order-sign p99 / floor p99, c=16, 1 worker", "<= 1.5",
                       f"{sign['ratio_p99']:.2f} ({sign['service']['p99_ms']:.1f} / {sign['floor']['p99_ms']:.1f} ms)",
                       sign["ratio_p99"] <= 1.5))  # fmt: skip
        single = sign.get("single")
        if single:
            r50 = single["service"]["p50_ms"] / single["floor"]["p50_ms"]
            r99 = single["service"]["p99_ms"] / single["floor"]["p99_ms"]
            rows.append(_t("order-sign / floor, one request at a time (c=1)", "<= 2 (p50 and p99)",
                           f"p50 {r50:.2f} ({single['service']['p50_ms']:.1f} / {single['floor']['p50_ms']:.1f} ms), "
                           f"p99 {r99:.2f}", r50 <= 2.0 and r99 <= 2.0))  # fmt: skip
    elif results.get("http_skipped"):
        rows.append(_t("order-sign p50 / floor p50, c=16, 1 worker", "<= 1.5", "SKIPPED", None))
    if irrelevant:
        cpu = (f"; CPU per request {irrelevant['ratio_cpu']:.2f}x the floor's" if "ratio_cpu" in irrelevant else "")
        rows.append(_t("irrelevant order-select p50 / floor p50, c=16, 1 worker", "<= 1.2",
                       f"{irrelevant['ratio_p50']:.2f} (throughput {irrelevant['service']['rps']:.0f} vs "
                       f"{irrelevant['floor']['rps']:.0f}/s{cpu})", irrelevant["ratio_p50"] <= 1.2))  # fmt: skip
    sign2 = _row(results, "order-sign", 2)
    if sign and sign2:
        gain = sign2["service"]["rps"] / sign["service"]["rps"]
        floor_gain = sign2["floor"]["rps"] / sign["floor"]["rps"]
        rows.append(_t("2 workers / 1 worker throughput, order-sign, 16 keep-alive connections", ">= 1.5",
                       f"{gain:.2f} ({sign2['service']['rps']:.0f} vs {sign['service']['rps']:.0f}/s; "
                       f"floor {floor_gain:.2f})", gain >= 1.5))  # fmt: skip
    mix = {r["workers"]: r for r in results.get("mixed", [])}
    if 1 in mix and 2 in mix:
        gain = mix[2]["service"]["rps"] / mix[1]["service"]["rps"]
        rows.append(_t("2 workers / 1 worker throughput, mixed workload", ">= 1.5",
                       f"{gain:.2f} ({mix[2]['service']['rps']:.0f} vs {mix[1]['service']['rps']:.0f}/s)",
                       gain >= 1.5))  # fmt: skip
    gate = results.get("gate_check")
    if gate:
        rows.append(_t("relevance gate: cards identical to the full evaluation (generated records)",
                       "0 differences", f"{len(gate['differences'])} in {gate['screened']} gated of "
                       f"{gate['sessions']} sessions", not gate["differences"]))  # fmt: skip
    rows.append(peer_target())
    inproc = [r for r in results.get("inprocess", []) if r["size"] == TARGET_SIZE]
    if inproc:
        worst = max(inproc, key=lambda r: r["p50_ms"]["total"])
        rows.append(_t("in-process p50, 500 resources (slower hook)", "<= 2 ms",
                       f"{worst['p50_ms']['total']:.2f} ms ({worst['hook']})", worst["p50_ms"]["total"] <= 2.0))  # fmt: skip
    fb = results.get("fallback") or []
    if fb:
        default = fb[0]
        rows.append(_t("fallback p50 / injected latency (default settings)", "<= 3",
                       f"{default['ratio_to_delay']:.2f} ({default['p50_ms']} ms; {default['fhir_calls_per_hook']:g} calls, "
                       f"{default['max_in_flight']} at once)", default["ratio_to_delay"] <= 3.0))  # fmt: skip
        for extra in fb[1:]:
            rows.append(_t(f"fallback, fetch_concurrency={extra['fetch_concurrency']}", "<= 3",
                           f"{extra['ratio_to_delay']:.2f} ({extra['p50_ms']} ms; {extra['max_in_flight']} at once)",
                           extra["ratio_to_delay"] <= 3.0))  # fmt: skip
    cold = results.get("cold_start")
    if cold:
        rows.append(_t("cold start (spawn to first answered hook)", "<= 2 s", f"{cold['p50_s']:.2f} s",
                       cold["p50_s"] <= 2.0))  # fmt: skip
    growth = results.get("growth") or {}
    if growth.get("exponent") is not None:
        rows.append(_t(f"growth with record size ({growth['from']}..{growth['to']} resources)",
                       "exponent <= 1 (linear)", f"{growth['exponent']:.2f}", growth["exponent"] <= GROWTH_TOLERANCE))  # fmt: skip
    return rows


PEER_RESULTS = ROOT / "bench" / "results" / "peer.json"


def peer_target(path: Path = PEER_RESULTS) -> dict[str, Any]:
    """The peer ratio from the last ``python -m bench.peer`` (its own command: it needs node
    and a checkout of the peer), "not measured" without one."""
    from bench import peer

    name = "peer ratio (AHRQ CDS Connect CQL Services), same-size record"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        return _t(name, f">= {peer.GOAL:g}x", peer.summary(result), result["ratio_rps"] >= peer.GOAL)
    except (OSError, ValueError, KeyError, TypeError):
        return _t(name, f">= {peer.GOAL:g}x", "not measured by this benchmark (`python -m bench.peer "
                  "--peer-dir DIR` measures it; issue 11 measured 45-60x)", "not measured")  # fmt: skip


def _t(name: str, target: str, value: str, met: bool | str | None) -> dict[str, Any]:
    return {"target": name, "goal": target, "measured": value, "met": met}


def _met(met: bool | str | None) -> str:
    if isinstance(met, str):
        return met
    return "SKIPPED" if met is None else "met" if met else "NOT met"


# ---------------------------------------------------------------------------------- tables

INPROC_HEAD = ["resources", "hook", "n", "parse", "record", "features", "rules", "render", "total p50", "total p99", "cards"]
HTTP_HEAD = ["workers", "hook", "service p50", "service p99", "service req/s", "floor p50", "floor p99", "floor req/s",
             "ratio p50", "ratio p99", "CPU ratio"]  # fmt: skip
FALLBACK_HEAD = ["fetch_concurrency", "calls/hook", "max in flight", "p50", "p99", "with prefetch p50", "p50 / delay"]


def inproc_rows(results: dict[str, Any]) -> list[list[str]]:
    return [
        [f"{r['size']:,}", r["hook"], str(r["iterations"]),
         *(f"{r['p50_ms'][p]:.2f}" for p in ("parse", "record", "features", "rules", "render", "total")),
         f"{r['p99_ms']['total']:.2f}", ", ".join(r["cards"]) or "-"]
        for r in results.get("inprocess", [])
    ]  # fmt: skip


def http_rows(results: dict[str, Any]) -> list[list[str]]:
    return [
        [str(r["workers"]), r["hook"],
         f"{r['service']['p50_ms']:.1f}", f"{r['service']['p99_ms']:.1f}", f"{r['service']['rps']:.1f}",
         f"{r['floor']['p50_ms']:.1f}", f"{r['floor']['p99_ms']:.1f}", f"{r['floor']['rps']:.1f}",
         f"{r['ratio_p50']:.2f}", f"{r['ratio_p99']:.2f}", f"{r['ratio_cpu']:.2f}" if "ratio_cpu" in r else "-"]
        for r in results.get("http", [])
    ]  # fmt: skip


SINGLE_HEAD = ["hook", "service p50", "service p99", "floor p50", "floor p99", "service - floor, p50"]


def single_rows(results: dict[str, Any]) -> list[list[str]]:
    """One request at a time (c=1, 1 worker): latency without queueing."""
    return [
        [r["hook"], f"{r['single']['service']['p50_ms']:.1f}", f"{r['single']['service']['p99_ms']:.1f}",
         f"{r['single']['floor']['p50_ms']:.1f}", f"{r['single']['floor']['p99_ms']:.1f}",
         f"{r['single']['service']['p50_ms'] - r['single']['floor']['p50_ms']:.1f}"]
        for r in results.get("http", []) if r.get("single")
    ]  # fmt: skip


STEPS_HEAD = ["hook", "n", "parse", "validate", "gate", "record", "features", "rules", "render", "own steps",
              "CPU/request", "floor CPU/request", "service - floor", "rest"]  # fmt: skip
#: the steps the floor does not pay for (it parses the body too: ``parse`` is shown apart)
_STEP_NAMES = ("validate", "gate", "record", "features", "rules", "render")


def steps_rows(results: dict[str, Any]) -> list[list[str]]:
    """The steps the service timed in itself (p50, ms; 1 worker, c=16) against the CPU time
    each request cost the server and the floor (all threads, from /proc)."""
    out = []
    for r in results.get("http", []):
        st = r.get("steps")
        if not st or r["workers"] != 1 or "cpu_ms_per_request" not in r["service"]:
            continue
        steps = sum(st.get(k, 0.0) for k in _STEP_NAMES)
        ours, floor = r["service"]["cpu_ms_per_request"], r["floor"]["cpu_ms_per_request"]
        out.append([r["hook"], str(st.get("n", 0)),
                    *(f"{st[k]:.2f}" if k in st else "-" for k in ("parse", *_STEP_NAMES)),
                    f"{steps:.2f}", f"{ours:.2f}", f"{floor:.2f}", f"{ours - floor:.2f}",
                    f"{ours - floor - steps:.2f}"])  # fmt: skip
    return out


MIXED_HEAD = ["workers", "service req/s", "service p50", "service p99", "floor req/s", "floor p50", "floor p99",
              "throughput / floor", "p99 / floor", "CPU/request service", "CPU/request floor"]  # fmt: skip


def mixed_rows(results: dict[str, Any]) -> list[list[str]]:
    return [
        [str(r["workers"]), f"{r['service']['rps']:.1f}", f"{r['service']['p50_ms']:.1f}", f"{r['service']['p99_ms']:.1f}",
         f"{r['floor']['rps']:.1f}", f"{r['floor']['p50_ms']:.1f}", f"{r['floor']['p99_ms']:.1f}",
         f"{r['ratio_rps']:.2f}", f"{r['ratio_p99']:.2f}",
         f"{r['service'].get('cpu_ms_per_request', 0):.2f}", f"{r['floor'].get('cpu_ms_per_request', 0):.2f}"]
        for r in results.get("mixed", [])
    ]  # fmt: skip


def gate_line(results: dict[str, Any]) -> str | None:
    g, t = results.get("gate_check"), results.get("gate_time")
    if not g:
        return None
    line = (f"Relevance gate on the generated records (sizes {', '.join(f'{x:,}' for x in g['sizes'])}; seeds "
            f"{', '.join(map(str, g['seeds']))}): {g['sessions']} order sessions, {g['screened']} answered by the gate, "
            f"{len(g['differences'])} with cards differing from the full evaluation.")
    if t:
        line += (f" In-process, the irrelevant order-select at {t['size']:,} resources takes {t['gate_p50_ms']:.2f} ms "
                 f"through the gate against {t['full_p50_ms']:.2f} ms for record + evaluation (p50 of {t['iterations']}).")
    return line


def fallback_rows(results: dict[str, Any]) -> list[list[str]]:
    return [
        [str(r["fetch_concurrency"]), f"{r['fhir_calls_per_hook']:g}", str(r["max_in_flight"]), f"{r['p50_ms']:.1f}",
         f"{r['p99_ms']:.1f}", f"{r['with_prefetch_p50_ms']:.1f}", f"{r['ratio_to_delay']:.2f}"]
        for r in results.get("fallback", [])
    ]  # fmt: skip


def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if console.width < 150:  # not a terminal, or a narrow one: keep rows on one line
        console = Console(width=150)

    def table(title: str, head: list[str], rows: list[list[str]]) -> None:
        if not rows:
            return
        t = Table(title=title, title_justify="left")
        for h in head:
            t.add_column(h, justify="left" if h in ("hook", "cards", "target", "goal", "measured") else "right")
        for row in rows:
            t.add_row(*row)
        console.print(t)

    table("In-process evaluation per hook (ms; p50 of each step)", INPROC_HEAD, inproc_rows(results))
    if results.get("http_skipped"):
        console.print(f"[bold]HTTP: SKIPPED[/bold] - {results['http_skipped']}")
    table(f"HTTP, {TARGET_SIZE}-resource patient, prefetch present, concurrency {results.get('concurrency', 16)} "
          "(ms; floor = bare FastAPI parsing the same body)", HTTP_HEAD, http_rows(results))  # fmt: skip
    table("HTTP, one request at a time (c=1, 1 worker; ms)", SINGLE_HEAD, single_rows(results))
    table("Steps timed in the service (p50 ms, 1 worker, c=16)", STEPS_HEAD, steps_rows(results))
    table("Mixed workload (90% irrelevant order-select, 8% inotuzumab order-select, 2% order-sign; c=16)",
          MIXED_HEAD, mixed_rows(results))  # fmt: skip
    if gate_line(results):
        console.print(gate_line(results))
    table(f"Fallback: no prefetch, FHIR server with {results.get('fallback_delay_ms', 50):g} ms per call (ms)",
          FALLBACK_HEAD, fallback_rows(results))  # fmt: skip
    cold = results.get("cold_start")
    if cold:
        console.print(f"Cold start: {cold['p50_s']:.2f} s (runs: {', '.join(f'{s:.2f}' for s in cold['seconds'])}); "
                      f"RSS {cold['rss_first_mib']} MiB at the first answer, {cold['rss_warm_mib']} MiB after "
                      f"{cold['warm_calls']} calls (1 worker)")  # fmt: skip
    table("Targets (issues 6 and 11)", ["target", "goal", "measured", "result"],
          [[t["target"], t["goal"], t["measured"], _met(t["met"])] for t in results.get("targets", [])])


# ---------------------------------------------------------------------------------- markdown


def _md(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    pk = m["packages"]
    lines = [
        "## Performance",
        "",
        "Measured with the benchmark in `bench/` (issues 6 and 11). Run it from the repository root:",
        "",
        "```sh",
        "apt-get install -y wrk          # the HTTP load generator (Debian package); without it the HTTP part is skipped",
        "python -m bench                 # full run, a few minutes; --quick for a short one",
        "python -m bench --write-docs    # also rewrite this document (docs/performance.md)",
        "```",
        "",
        "It prints the tables below and writes `bench/results/latest.json`. Synthetic patients of 50, 500, 5,000",
        "and 20,000 resources (years of liver tests and blood counts, prior regimens, administrations, one",
        "inotuzumab cycle given and cycle 2 day 1 drafted) are evaluated in-process, then served over HTTP by",
        "`cds-service serve` (1 and 2 workers, default settings: log level INFO, audit store in a temporary",
        "SQLite file) and loaded with `wrk` at fixed concurrency over keep-alive connections. The *floor* is a",
        "bare FastAPI endpoint that reads and parses the same body and answers `{\"cards\": []}`, served the same",
        "way (same interpreter, uvicorn options, worker model) with the service's garbage-collector set-up",
        "(`tune_gc`: start-up heap frozen, first threshold 20,000), so it is a fair floor (issue 11: without",
        "it the floor spent a third of its time in collections). Every ratio is **service / floor in the same",
        "run**: absolute times depend on the machine and on what else runs on it. Benchmarks never gate CI.",
        "",
        f"Latest run: {m['date']}, commit {m['commit'] or '?'}, `{m['argv']}`.",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, {m['os']} (kernel {m['kernel']}), "
        f"Python {m['python']}, FastAPI {pk.get('fastapi')}, Starlette {pk.get('starlette')}, uvicorn {pk.get('uvicorn')} "
        f"({'httptools/uvloop' if pk.get('httptools') and pk.get('uvloop') else 'h11 and asyncio: no httptools/uvloop installed'}), "
        f"orjson {pk.get('orjson')}, {' '.join((m['wrk'] or 'wrk not installed').split()[:2])}; "
        f"bytecode cache {m['bytecode_cache']}.",
        *([f"Load average (1, 5, 15 min) before the HTTP runs {results['load_average']['before_http']}, after "
           f"{results['load_average'].get('after_http')}, on {m['cores']} cores: other work shared the machine, "
           "which is why the ratios, not the absolute times, are the figures to read."]
          if results.get("load_average") else []),
        "",
        "### Targets",
        "",
        _md(["target", "goal", "measured", "result"],
            [[t["target"], t["goal"], t["measured"], _met(t["met"])] for t in results.get("targets", [])]),
        "",
        "### In-process evaluation per hook",
        "",
        "Milliseconds, p50 of each step over `n` iterations (parse = `orjson.loads` of the request body, paid",
        "by the floor too; total = record + features + rules + render, without parse).",
        "",
        _md(INPROC_HEAD, inproc_rows(results)),
        "",
    ]  # fmt: skip
    growth = results.get("growth") or {}
    if growth.get("exponent") is not None:
        lines += [f"Growth: total time rises as size^{growth['exponent']:.2f} from {growth['from']:,} to "
                  f"{growth['to']:,} resources (log-log slope of the slower hook's p50; 1 = linear).", ""]  # fmt: skip
    lines += ["### HTTP", ""]
    if results.get("http_skipped"):
        lines += [f"SKIPPED: {results['http_skipped']}", ""]
    if results.get("http"):
        body = results["http"][0]["body_bytes"]
        lines += [f"{TARGET_SIZE}-resource patient (request body {body / 1024:.0f} KiB), prefetch present, "
                  f"concurrency {results.get('concurrency')}, {results.get('duration_s'):g} s per run; milliseconds.", "",
                  _md(HTTP_HEAD, http_rows(results)), ""]  # fmt: skip
        single = single_rows(results)
        if single:
            lines += ["One request at a time (wrk c=1, 1 worker): what one clinician's hook waits, without",
                      "queueing behind other requests; milliseconds.", "", _md(SINGLE_HEAD, single), ""]  # fmt: skip
            c16 = [r for r in results["http"] if r["workers"] == 1]
            floor_ms = max(1000 / r["floor"]["rps"] for r in c16)
            lines += [f"At c=16 every request waits for the ones ahead of it (Little's law: latency = 16 / "
                      f"throughput). The floor alone takes {floor_ms:.1f} ms of the worker per request here, so "
                      f"p99 <= 25 ms at c=16 would need about {1000 * 16 / 25:.0f} requests/s, which no endpoint "
                      f"that parses this body reaches on this machine (floor: {min(r['floor']['rps'] for r in c16):.0f}"
                      f"/s).", ""]  # fmt: skip
        steps = steps_rows(results)
        if steps:
            lines += ["#### Where a request's time goes, in the server", "",
                      "Each step as the service timed it in itself (audit `timings_ms`, p50 over the run's requests,",
                      "1 worker, c=16; no step awaits, so each is CPU), against the CPU time each request cost the",
                      "server and the floor (user + system time of every process over the wrk run, from `/proc`,",
                      "divided by the requests answered: unlike throughput, it does not depend on what else runs on",
                      "the machine). *parse* is the JSON parse of the body, which the floor does too; *own steps* are",
                      "the others, which the floor does not do. *rest* = service - floor - own steps: what the service",
                      "pays beyond the floor outside its steps: the audit row (built on the loop, written by a thread",
                      "that shares the GIL), the middleware, the log line, metrics, freeing the request's objects,",
                      "and the caches and allocator working on a larger process.",
                      "", _md(STEPS_HEAD, steps), ""]  # fmt: skip
        mixed = mixed_rows(results)
        if mixed:
            lines += ["#### Mixed workload", "",
                      "What an EHR sends (issue 11): 90 % order-selects for orders no rule is about (paracetamol",
                      "picked, no inotuzumab drafted), 8 % inotuzumab order-selects, 2 % order-signs, each",
                      f"request drawn at random; {TARGET_SIZE}-resource record, c={results.get('concurrency')}, "
                      "keep-alive; the floor gets the same requests.", "", _md(MIXED_HEAD, mixed), ""]  # fmt: skip
        gate = gate_line(results)
        if gate:
            lines += [gate, ""]
        rss = {r["workers"]: r.get("service_rss_mib") for r in results["http"]}
        lines += ["Resident memory after the runs: " + ", ".join(f"{w} worker(s) {v} MiB" for w, v in rss.items()) +
                  " (all processes of the server).", ""]  # fmt: skip
    if results.get("fallback"):
        lines += ["### FHIR-server fallback", "",
                  f"order-select without prefetch; a local FHIR endpoint answers every call after "
                  f"{results.get('fallback_delay_ms'):g} ms; sequential calls; milliseconds.", "",
                  _md(FALLBACK_HEAD, fallback_rows(results)), ""]  # fmt: skip
    cold = results.get("cold_start")
    if cold:
        lines += ["### Cold start and memory", "",
                  f"`cds-service serve` from process start to the first answered order-select hook: "
                  f"{cold['p50_s']:.2f} s (median of {cold['runs']}). Resident memory (VmRSS, 1 worker): "
                  f"{cold['rss_first_mib']} MiB at the first answer, {cold['rss_warm_mib']} MiB after "
                  f"{cold['warm_calls']} calls with the {cold['size']}-resource patient.", ""]  # fmt: skip
    lines += [
        "### What was changed to get here",
        "",
        "Each found with py-spy/pyinstrument on this benchmark; what the service answers is unchanged (the test",
        "suite, and identical feature values and cards before and after on the synthetic patients and on every",
        "scenario record).",
        "",
        "- `features/_medications.py` `matches`: a medication's membership key is read once per resource",
        "  (it was rebuilt for every ValueSet asked about it) and membership is cached across requests when",
        "  the medication does not depend on the record (no external `medicationReference`); `history` asks",
        "  each ValueSet once per distinct medication instead of once per resource.",
        "- `features/_labs.py` `observations`: each ValueSet is asked once per distinct code, and the",
        "  matching results are picked by position instead of a pass over every result per ValueSet.",
        "- `features/_read.py`: `in_valueset` keeps ValueSet membership per concept across requests (it depends",
        "  on the compiled knowledge only); `parse_datetime` is cached by string (a record repeats each date",
        "  many times); `concept_key` checks `dict` before the slow `Mapping` ABC check.",
        "- `features/_memo.py`: the memo key no longer hashes the site policy on every helper call (the",
        "  context's identity is checked first).",
        "- `record/_build.py`: plain resources in a Bundle are copied without a nested generator per entry.",
        "- `api/app.py` `tune_gc`, called by `cds-service serve` and the uvicorn factory: the start-up heap is",
        "  frozen out of garbage collection and the first GC threshold raised, so parsing a large request no",
        "  longer sets off full collections that walk the whole process.",
        "- `knowledge/_terminology.py`: `Terminology` can be weakly referenced (for the cache above).",
        "- `engine/conditions.py`: each distinct expression is parsed once per process (the two hooks' plans",
        "  share most rules; ANTLR parsing was most of the engine's start-up), and the compiled function",
        "  reuses the parse instead of parsing a third time: Engine start-up 1.0 s -> 0.35-0.55 s.",
        "- `features/_index.py`: a per-record index reads each Observation and MedicationAdministration",
        "  once (void or not, parsed date) instead of once per ValueSet per feature (outputs byte-identical",
        "  on the 110 scenario bundles and the synthetic patients).",
        "- `api/hooks.py`: the engine evaluates on the event loop, not in a worker thread. Evaluation is pure",
        "  CPU under the GIL, so the thread bought no parallelism, only GIL hand-offs with the loop parsing",
        "  the next body: 1 worker, c=16, order-sign 30 -> 50 hooks/s, p50 521 -> 312 ms (wrk, 10 s).",
        "- `settings.py`: `fetch_concurrency` defaults to 10, so the 9 prefetch queries of a hook go out in",
        "  one round trip (fallback p50 194 ms -> 91 ms with 50 ms per call).",
        "",
        "- Cold start: `engine/conditions.py` builds fhirpathpy's AST from the strict check's parse tree",
        "  instead of parsing every expression a second time (engine build ~0.5 -> ~0.35 s; a test proves",
        "  the ASTs identical for every shipped expression); httpx is imported, and the outbound HTTP client",
        "  built, only when a fetch is needed (the first hook call paid ~0.25 s for it): 2.33 s -> ~1.7 s.",
        "",
        "- `api/audit_writer.py`: one thread writes the audit rows with group commit (each hook awaits its",
        "  row's future after the response is sent) instead of one threadpool hand-off per request, whose",
        "  GIL trading with the event loop cost ~25 % of the throughput (measured: 59 vs 44 hooks/s without",
        "  vs with the audit; with the writer, within 1 %).",
        "",
        "Second round (the next step the first round named: read each medication and code once per record):",
        "",
        "- `features/_medications.py`: every medication resource of the record and the session is numbered",
        "  once by its membership key (`_Numbering`), and each ValueSet is asked once per distinct",
        "  medication (`_hits`), through process-wide numbers, so the nested key tuple is hashed once per",
        "  record instead of once per ValueSet; an unreadable resource still fails only the feature that",
        "  reaches it.",
        "- `features/_labs.py`: one pass groups the usable results by code; a ValueSet's results are",
        "  merged from its groups (no sort of the whole record).",
        "- `features/_memo.py`: the last (record, context) pair is answered without the id-table lookups",
        "  (~500 asks per evaluation), held weakly so no record outlives its evaluation.",
        "- `record/_build.py`, `api/envelope.py`: no per-resource call for the DSTU2 mapping, no f-string",
        "  per resource, exact `dict` checks before the `Mapping` ABC.",
        "- `engine/_fastpath.py`, `_fastmath.py`, `_fastvalues.py`: the FHIRPath fast path now also covers",
        "  `+ - * /`, `round`, `abs` and `join` on plain numbers and strings (on the 108 scenarios and the",
        "  synthetic patients no evaluation falls back to fhirpathpy any more; a test checks every fast",
        "  operator against fhirpathpy), anything else still goes to fhirpathpy;",
        "  member paths are read in one loop and chains of `+`/`and`/`or` run as one loop.",
        "- `engine/evaluate.py`, `cards.py`, `apply.py`: the features' JSON is built once per evaluation for",
        "  both the conditions and the audit; card markdown escapes only text that needs it; the",
        "  formatted evaluation instant is cached.",
        "- Together, in-process p50 for order-sign at 500 resources: 9.8 -> 4.9 ms (record 1.4 -> 0.6,",
        "  features 6.4 -> 3.4, rules 0.8 -> 0.35, render 1.0 -> 0.4); HTTP ratio 2.75 -> 2.55; c=16",
        "  throughput 51.6 -> 48.6 hooks/s against a floor that itself measured 146 -> 129/s in these runs.",
        "",
        "Third round (issue 11: a fair floor, orders no rule is about, cores that share the load):",
        "",
        "- `bench/floor_app.py`: the floor calls the service's own `tune_gc` and is served like the",
        "  service, so every ratio above is against a fair floor (the old floor's ratios were flattered).",
        "- `engine/relevance.py`: a relevance gate derived at load from the rules' opening guards. Every",
        "  rule of a hook opens with `%features.F.value.P = true`, where feature F promises (an `OrderGuard`",
        "  next to its code) that P is not true unless a draft MedicationRequest is in given ValueSets; the",
        "  union of those ValueSets is the gate (today: inotuzumab, systemic azoles, other SACT and the TKI",
        "  sets). A session none of whose drafts is in them is answered without building the record or",
        "  computing a feature (the data-problems card still shown when the record would carry notes). A",
        "  rule that opens any other way (e.g. one that fires on any order) leaves its hook without a gate;",
        "  a draft whose medication cannot be read, or names a Medication elsewhere in the record, is",
        "  relevant. Cards identical with and without the gate on every scenario record in several order",
        "  sessions each (tests/test_relevance_gate.py, which also shows a wrong gate is caught) and on",
        "  the generated records (above).",
        "- `serve --workers N` (`commands/_workers.py`): the knowledge is compiled once, then N workers are",
        "  forked, each with its own listening socket in one `SO_REUSEPORT` group, so the kernel spreads",
        "  keep-alive connections across them (uvicorn's shared socket let one worker take most of 16",
        "  connections: 0.84-1.4x for 2 workers in issue 11).",
        "- Request path: one log line per hook call (the request line now carries the card count; the",
        "  separate \"evaluated\" line is gone), nothing built for a line whose level is off, the JSON",
        "  formatter no longer masks tokens twice and writes with orjson; the request's objects are freed",
        "  after the response is sent (py-spy showed ~11 % of the main thread freeing them on return from",
        "  the handler, before the response went out); the handler times auth, read and validate too.",
        "",
        "Fourth round (issue 11, after py-spy on the server at c=16 and per-thread CPU from `/proc`):",
        "",
        "- `api/audit_writer.py`: at c=16 the writer still committed one or two rows per transaction",
        "  (it is faster than the requests), 0.57 ms of its thread's CPU per order-sign. While two or more",
        "  hook calls are in flight it now waits up to 25 ms for their rows, sleeping in 5 ms slices rather",
        "  than being woken (and trading the GIL with the event loop) by every row: batches of 4-15 rows,",
        "  0.34 ms per request. With one call at a time it writes at once, in the idle time after the",
        "  response, so a clinician's single call does not pay for the write.",
        "- `record/_build.py`: plain Bundle entries are read in one loop (this patient's subject reference",
        "  checked inline, no per-resource copy, generator or call); every other entry goes the general",
        "  way at its own position, so the notes are the same, in the same order (a test compares the two",
        "  paths on a prefetch that mixes every odd shape). The relevance gate's `record_notes` reads the",
        "  prefetch in one loop too. `build_record` at 500 resources: 0.53 -> 0.36 ms (warm caches).",
        "- `features/`: where every resource is read (`dated`, lab results grouped by code, medication",
        "  keys) the common shapes are read inline with the general readers' own results; `history` takes",
        "  each row's medication number from one per-record pass instead of a look-up per ValueSet;",
        "  the lab sorts key in C. Feature helpers at 500 resources: about 1.75 -> 1.45 ms. Feature",
        "  values, cards and notes identical on 143 cases (the scenarios and generated records of 50, 500",
        "  and 5,000 resources, both hooks), compared byte for byte before and after.",
        "- Together (same machine, same load, per-thread CPU from `/proc`, order-sign at c=16): 7.04 ->",
        "  5.84 ms CPU per request (main thread 6.47 -> 5.50, audit writer 0.57 -> 0.34).",
        "",
    ]
    lines += _not_met(results)
    return "\n".join(lines)


def _not_met(results: dict[str, Any]) -> list[str]:
    """Why the unmet targets are not met, from this run's numbers (cost per resource, floor)."""
    by_size = {}
    for r in results.get("inprocess", []):
        if r["hook"] == "order-sign":
            by_size[r["size"]] = r["p50_ms"]["total"]
    lines = ["### Why the unmet targets are not met", ""]
    if 50 in by_size and TARGET_SIZE in by_size:
        per = (by_size[TARGET_SIZE] - by_size[50]) / (TARGET_SIZE - 50) * 1000
        fixed = by_size[50] - per * 50 / 1000
        budget = (2.0 - max(fixed, 0.0)) / TARGET_SIZE * 1000
        lines += [f"- In-process: order-sign costs about {per:.1f} µs per resource plus {fixed:.2f} ms whatever the",
                  f"  record (p50 at 50 and {TARGET_SIZE} resources). 2 ms at {TARGET_SIZE} resources leaves "
                  f"{budget:.1f} µs per resource for",
                  "  reading it into a record and indexing it once, which one pass of CPython over freshly parsed",
                  "  JSON (dict look-ups, a date parse, a code key) does not reach on this machine."]  # fmt: skip
    sign, irrelevant = _row(results, "order-sign"), _row(results, "order-select, irrelevant")
    for row, what in ((sign, "order-sign"), (irrelevant, "irrelevant order-select")):
        if not row or "cpu_ms_per_request" not in row["service"]:
            continue
        st = row.get("steps") or {}
        steps = sum(st.get(k, 0.0) for k in _STEP_NAMES)
        ours, floor = row["service"]["cpu_ms_per_request"], row["floor"]["cpu_ms_per_request"]
        own = ", ".join(f"{k} {st[k]:.2f}" for k in _STEP_NAMES if k in st)
        parsed = f" (the parse, {st['parse']:.2f} ms, the floor pays too)" if "parse" in st else ""
        lines += [f"- {what} / floor: each request cost the service {ours:.2f} ms of CPU and the floor {floor:.2f} ms "
                  f"(x{ours / max(floor, 0.01):.2f}; latency ratio {row['ratio_p50']:.2f}, which also depends on what "
                  f"else ran on the machine). Of the {ours - floor:.2f} ms more, the service's own steps take "
                  f"{steps:.2f} ({own}){parsed}; "
                  f"the rest, {ours - floor - steps:.2f} ms, is the per-request work outside them (see the steps table). "
                  f"A latency ratio of {1.2 if row is irrelevant else 1.5} needs the service within "
                  f"{(0.2 if row is irrelevant else 0.5) * floor:.2f} ms of CPU of the floor"
                  + (f": its own steps alone take {steps / max((0.2 if row is irrelevant else 0.5) * floor, 0.01):.1f} "
                     "times that, so no trimming of the request path reaches it; it would take reading the "
                     "record at a fraction of CPython's cost per resource (a compiled reader) or not reading "
                     "it at all (answers kept across calls, which would serve data a newer result has "
                     "replaced: hazard HAZ-006)." if steps > (0.2 if row is irrelevant else 0.5) * floor
                     else ": its own steps fit in that, the rest does not. The rest is what every audited and "
                          "logged call costs beyond a bare endpoint (the audit row, written by a thread that "
                          "shares the GIL; the request line; metrics; the middleware) and freeing the "
                          "request's objects; an audit row per call is a control of hazard HAZ-017.")]  # fmt: skip
    sign2 = _row(results, "order-sign", 2)
    if sign and sign2 and sign2["service"]["rps"] / sign["service"]["rps"] < 1.5:
        lines += [f"- 2 workers: {sign2['service']['rps'] / sign['service']['rps']:.2f}x one worker for the service "
                  f"and {sign2['floor']['rps'] / sign['floor']['rps']:.2f}x for the floor in this run. The machine has "
                  f"{results['machine']['cores']} cores, and wrk, the SQLite audit writer and whatever else runs here "
                  "share them with the two workers, so a second worker cannot add a whole core."]  # fmt: skip
    mixed = {m["workers"]: m for m in results.get("mixed", []) if "service" in m and "floor" in m}
    if 1 in mixed and 2 in mixed and mixed[2]["service"]["rps"] / mixed[1]["service"]["rps"] < 1.5:
        ours = mixed[2]["service"]["rps"] / mixed[1]["service"]["rps"]
        bare = mixed[2]["floor"]["rps"] / mixed[1]["floor"]["rps"]
        lines += [f"- 2 workers, mixed workload: {ours:.2f}x one worker for the service and {bare:.2f}x for the "
                  f"floor. Most of the mix is cheap (the gate answers 90 % of it), so one worker already "
                  f"keeps wrk busy on the other of the {results['machine']['cores']} cores; a second worker "
                  "only takes CPU from wrk (the floor loses throughput the same way). It needs a machine "
                  "with more cores than the load generator and the workers together."]  # fmt: skip
    return [*lines, ""] if len(lines) > 2 else []

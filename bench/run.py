"""``python -m bench``: the performance benchmark of issues 6 and 11 (see docs/performance.md).

Steps, each printed as it runs: synthetic patients of increasing size; in-process
evaluation per hook; the relevance gate against the full evaluation on the generated
records; HTTP against the service and the fair floor (wrk, 1 and 2 workers, with the
steps the service timed in itself); a mixed EHR workload; the FHIR-server fallback with
injected latency; cold start and memory. Prints
the tables, writes ``bench/results/latest.json`` and, with ``--write-docs``,
docs/performance.md. Exit 0 unless the benchmark itself breaks: numbers never
fail a run (benchmarks never gate CI).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gatecheck, inprocess, loadgen, report, web  # noqa: E402
from bench.servers import ROOT, ServerFailed  # noqa: E402
from bench.synth import SIZES, make_patient  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "latest.json"
README = ROOT / "docs" / "performance.md"  # the Performance document the README links to


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short run: fewer iterations, 3 s wrk runs, 1 cold start")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="patient sizes (resources), comma-separated")
    p.add_argument("--http-size", type=int, default=report.TARGET_SIZE, help="patient size for HTTP and fallback")
    p.add_argument("--concurrency", type=int, default=16, help="wrk connections (fixed concurrency)")
    p.add_argument("--duration", type=float, help="seconds per wrk run [8; quick 3]")
    p.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    p.add_argument("--repeat", type=int, help="wrk runs per server and kind, service and floor alternating; "
                   "medians kept [2; quick 1]")
    p.add_argument("--fallback-delay", type=float, default=0.05, help="injected latency per FHIR call, seconds")
    p.add_argument("--skip-http", action="store_true", help="in-process only (no servers)")
    p.add_argument("--skip-mixed", action="store_true", help="leave out the mixed-workload runs")
    p.add_argument("--write-docs", action="store_true", help="also rewrite docs/performance.md (between its performance markers)")
    p.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    p.add_argument("--docs-from", type=Path, metavar="JSON",
                   help="only rewrite docs/performance.md from a saved run's JSON, then exit")
    return p.parse_args(argv)


def say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.docs_from:
        write_docs(json.loads(args.docs_from.read_text(encoding="utf-8")))
        return 0
    quick = args.quick
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    duration = args.duration or (3.0 if quick else 8.0)
    now = datetime.now(UTC)
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": report.machine(), "quick": quick, "concurrency": args.concurrency,
                               "duration_s": duration, "fallback_delay_ms": args.fallback_delay * 1000}  # fmt: skip

    from cds_service.engine import Engine
    from cds_service.knowledge import load_knowledge

    say("loading the knowledge and compiling the rules ...")
    engine = Engine(load_knowledge())
    from cds_service.api.app import tune_gc

    tune_gc()  # the server tunes its garbage collector once built (api/app.py); measure the same
    templates = {s.id: dict(s.prefetch) for s in engine.services}

    say(f"in-process evaluation, sizes {', '.join(f'{s:,}' for s in sizes)} ...")
    patients = {}
    results["inprocess"] = []
    for size in sizes:
        patient = patients[size] = make_patient(size, now=now)
        for sid, hook in inprocess.HOOKS:
            r = inprocess.measure(engine, patient, sid, hook, budget_s=1.0 if quick else 4.0,
                                  min_iter=3 if quick else 10, max_iter=100 if quick else 400,
                                  warmup=1 if quick else 3)  # fmt: skip
            results["inprocess"].append(r.as_json())
            say(f"  {size:>6,} resources {hook:<12} total p50 {r.p50_ms['total']:8.2f} ms  (record {r.p50_ms['record']:.2f}, "
                f"features {r.p50_ms['features']:.2f}, rules {r.p50_ms['rules']:.2f}, render {r.p50_ms['render']:.2f}; "
                f"parse {r.p50_ms['parse']:.2f}) n={r.iterations}")  # fmt: skip
    grow = [s for s in sizes if s >= report.TARGET_SIZE]
    if len(grow) >= 2:
        worst = [max(r["p50_ms"]["total"] for r in results["inprocess"] if r["size"] == s) for s in grow]
        results["growth"] = {"from": grow[0], "to": grow[-1], "exponent": inprocess.growth_exponent(grow, worst)}

    seeds = (1, 2) if quick else (1, 2, 3, 4, 5, 6)
    gate_sizes = tuple(x for x in (50, 500, 5000) if not quick or x <= 500)
    say(f"relevance gate against the full evaluation, generated records (sizes {gate_sizes}, seeds {seeds}) ...")
    results["gate_check"] = gatecheck.check(engine, now, sizes=gate_sizes, seeds=seeds)
    g = results["gate_check"]
    say(f"  {g['sessions']} sessions, {g['screened']} answered by the gate, {len(g['differences'])} differences"
        + (f": {g['differences'][:5]}" if g["differences"] else ""))
    http_patient = patients.get(args.http_size) or make_patient(args.http_size, now=now)
    results["gate_time"] = gatecheck.time_gate(engine, http_patient, now, iterations=20 if quick else 100)
    say(f"  irrelevant order-select in-process: gate {results['gate_time']['gate_p50_ms']} ms, full path "
        f"{results['gate_time']['full_p50_ms']} ms (p50)")
    if not args.skip_http:
        results["load_average"] = {"before_http": [round(x, 2) for x in os.getloadavg()]}
        with tempfile.TemporaryDirectory(prefix="sact-bench-") as tmp:
            workdir = Path(tmp)
            try:
                if loadgen.wrk_path() is None:
                    results["http_skipped"] = f"wrk is not installed; {loadgen.INSTALL_HINT}"
                    say(f"HTTP: SKIPPED - {results['http_skipped']}")
                else:
                    say(f"HTTP with wrk, {args.http_size}-resource patient, concurrency {args.concurrency}, "
                        f"{duration:g} s per run ...")  # fmt: skip
                    results["http"] = web.http_runs(workdir, http_patient, templates, workers=workers,
                                                    concurrency=args.concurrency, seconds=duration,
                                                    warmup_s=1.0 if quick else 2.0,
                                                    single_seconds=2.0 if quick else 4.0,
                                                    repeat=args.repeat or (1 if quick else 2), say=say)  # fmt: skip
                    if not args.skip_mixed:
                        say("mixed workload (90% irrelevant order-select, 8% order-select, 2% order-sign) ...")
                        results["mixed"] = web.mixed(workdir, http_patient, templates, workers=workers,
                                                     concurrency=args.concurrency, seconds=duration,
                                                     warmup_s=1.0 if quick else 2.0,
                                                     repeat=args.repeat or (1 if quick else 2), say=say)  # fmt: skip
                say(f"fallback: no prefetch, FHIR endpoint with {args.fallback_delay * 1000:g} ms per call ...")
                keys = len(templates["SactOrderSelect"])
                results["fallback"] = web.fallback(workdir, http_patient, templates["SactOrderSelect"],
                                                   delay_s=args.fallback_delay, calls=5 if quick else 20,
                                                   concurrency_settings=(None, keys), say=say)  # fmt: skip
                say("cold start: cds-service serve ...")
                results["cold_start"] = web.cold_start(workdir, http_patient, templates["SactOrderSelect"],
                                                       runs=1 if quick else 3, warm_calls=20 if quick else 50, say=say)  # fmt: skip
            except (ServerFailed, RuntimeError) as exc:
                results["error"] = str(exc)
                say(f"benchmark step failed: {exc}")

    if "load_average" in results:
        results["load_average"]["after_http"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = report.targets(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    report.print_tables(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    say(f"wrote {args.output} ({results['seconds']} s)")
    if args.write_docs:
        write_docs(results)
    return 1 if "error" in results else 0


def write_docs(results: dict[str, Any]) -> None:
    """Rewrite docs/performance.md (between its markers) from ``results``."""
    from cds_service.commands.readme import replace_marked

    section = report.markdown(results).split("\n", 1)[1]  # the document has its own heading
    README.write_text(replace_marked(README.read_text(encoding="utf-8"), "performance", section), encoding="utf-8")
    say(f"updated the Performance section of {README}")


if __name__ == "__main__":
    sys.exit(main())

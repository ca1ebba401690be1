"""In-process evaluation time per hook, split into its steps (issue 6, part 1).

Each iteration does what the hook endpoint does after reading the body: parse the JSON
(timed apart: it is the web layer's cost, the floor pays it too), build the record
(``record.build_record``), then ``Engine.evaluate``, whose ``timings_ms`` split the rest
into features, rules (conditions) and render (cards). ``total`` = record + evaluate.
A fresh parse every iteration, so nothing is reused between iterations that a real
request would not reuse either.
"""

from __future__ import annotations

import inspect
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.synth import SyntheticPatient, hook_request
from cds_service.record import build_record

PHASES = ("parse", "record", "features", "rules", "render", "total")
HOOKS = (("SactOrderSelect", "order-select"), ("SactOrderSign", "order-sign"))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class InProcessResult:
    size: int
    service: str
    hook: str
    iterations: int
    body_bytes: int
    cards: list[str]
    p50_ms: dict[str, float] = field(default_factory=dict)
    p99_ms: dict[str, float] = field(default_factory=dict)
    min_ms: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "size": self.size, "service": self.service, "hook": self.hook, "iterations": self.iterations,
            "body_bytes": self.body_bytes, "cards": self.cards,
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "min_ms": self.min_ms,
        }  # fmt: skip


def measure(
    engine: Any,
    patient: SyntheticPatient,
    service_id: str,
    hook: str,
    *,
    budget_s: float = 4.0,
    min_iter: int = 10,
    max_iter: int = 400,
    warmup: int = 3,
) -> InProcessResult:
    """Time ``min_iter``..``max_iter`` evaluations (stopping once ``budget_s`` is spent)."""
    definition = engine.service(service_id)
    templates = dict(definition.prefetch)
    body = orjson.dumps(hook_request(patient, hook, templates))
    takes_hook = "hook" in inspect.signature(engine.evaluate).parameters
    kw = {"hook": hook} if takes_hook else {}
    samples: dict[str, list[float]] = {p: [] for p in PHASES}
    cards: list[str] = []
    started = time.perf_counter()
    i = 0
    while True:
        t0 = time.perf_counter()
        request = orjson.loads(body)
        t1 = time.perf_counter()
        record = build_record(request, templates.keys())
        t2 = time.perf_counter()
        evaluation = engine.evaluate(service_id, record, patient.now, **kw)
        t3 = time.perf_counter()
        if i == 0:
            cards = list(evaluation.rule_codes)
        if i >= warmup:
            timings = evaluation.timings_ms or {}
            samples["parse"].append((t1 - t0) * 1000)
            samples["record"].append((t2 - t1) * 1000)
            for phase in ("features", "rules", "render"):
                samples[phase].append(float(timings.get(phase, 0.0)))
            samples["total"].append((t3 - t1) * 1000)
        i += 1
        done = i - warmup
        if done >= max_iter or (done >= min_iter and time.perf_counter() - started >= budget_s):
            break
        del request, record, evaluation
    return InProcessResult(
        size=patient.size, service=service_id, hook=hook, iterations=len(samples["total"]), body_bytes=len(body),
        cards=cards,
        p50_ms={p: round(statistics.median(v), 3) for p, v in samples.items()},
        p99_ms={p: round(percentile(v, 99), 3) for p, v in samples.items()},
        min_ms={p: round(min(v), 3) for p, v in samples.items()},
    )  # fmt: skip


def growth_exponent(sizes: Sequence[int], times: Sequence[float]) -> float | None:
    """Least-squares slope of log(time) on log(size): 1.0 is linear, above 1 worse."""
    pts = [(math.log(s), math.log(t)) for s, t in zip(sizes, times, strict=True) if s > 0 and t > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return round(sum((x - mx) * (y - my) for x, y in pts) / den, 3) if den else None

"""The relevance gate on the benchmark's generated records (issue 11): for every size and
seed of ``synth.make_patient`` and every order session built from it (the generated one,
each draft selected alone, all signed, the inotuzumab draft taken out, the premedication
alone), the gate's answer (``Engine.screen``) must give exactly the cards of the full
evaluation (uuids aside); sessions the gate does not answer are counted, not compared.
Also times the gate's answer in-process against the full path for the irrelevant order.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson

from bench.synth import hook_request, irrelevant_request, make_patient
from cds_service.record import build_record

SERVICE = {"order-select": "SactOrderSelect", "order-sign": "SactOrderSign"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def sessions(patient: Any, templates: dict[str, dict[str, str]]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "generated order-select", hook_request(patient, "order-select", templates["SactOrderSelect"])
    yield "generated order-sign", hook_request(patient, "order-sign", templates["SactOrderSign"])
    yield "premedication only", irrelevant_request(patient, templates["SactOrderSelect"])
    for order in patient.draft_orders:
        body = hook_request(patient, "order-select", templates["SactOrderSelect"])
        body["context"]["selections"] = [f"MedicationRequest/{order['id']}"]
        yield f"select {order['id']}", body
    others = [o for o in patient.draft_orders if "ino" not in o["id"]]
    for hook in ("order-select", "order-sign"):
        body = hook_request(patient, hook, templates[SERVICE[hook]])
        body["context"]["draftOrders"]["entry"] = [{"resource": o} for o in others]
        if hook == "order-select":
            body["context"]["selections"] = [f"MedicationRequest/{others[0]['id']}"]
        yield f"{hook} without inotuzumab", body


def check(engine: Any, now: datetime, sizes: tuple[int, ...] = (50, 500, 5000),
          seeds: tuple[int, ...] = (1, 2, 3, 4, 5, 6)) -> dict[str, Any]:
    """Compare the gate's answers with the full evaluation; see the module docstring."""
    templates = {s.id: dict(s.prefetch) for s in engine.services}
    compared = screened = 0
    diffs: list[str] = []
    for size in sizes:
        for seed in seeds:
            patient = make_patient(size, now=now, seed=seed)
            for label, body in sessions(patient, templates):
                sid = SERVICE[body["hook"]]
                req = orjson.loads(orjson.dumps(body))
                compared += 1
                gated = engine.screen(sid, req, templates[sid].keys())
                if gated is None:
                    continue
                screened += 1
                record = build_record(copy.deepcopy(req), templates[sid].keys())
                full = engine.evaluate(sid, record, now, hook=body["hook"])
                if _strip(gated.cards) != _strip(full.cards):
                    diffs.append(f"size {size} seed {seed} {label}")
    return {"sizes": list(sizes), "seeds": list(seeds), "sessions": compared, "screened": screened,
            "differences": diffs}


def time_gate(engine: Any, patient: Any, now: datetime, iterations: int = 50) -> dict[str, float]:
    """p50 ms of the irrelevant order-select in-process: the gate's answer, and the full
    path (record + evaluate) it replaces; each on a freshly parsed body."""
    templates = {s.id: dict(s.prefetch) for s in engine.services}
    raw = orjson.dumps(irrelevant_request(patient, templates["SactOrderSelect"]))
    keys = templates["SactOrderSelect"].keys()
    gate, full = [], []
    for _ in range(iterations):
        req = orjson.loads(raw)
        t0 = time.perf_counter()
        assert engine.screen("SactOrderSelect", req, keys) is not None
        gate.append((time.perf_counter() - t0) * 1000)
        req = orjson.loads(raw)
        t0 = time.perf_counter()
        engine.evaluate("SactOrderSelect", build_record(req, keys), now, hook="order-select")
        full.append((time.perf_counter() - t0) * 1000)
    return {"gate_p50_ms": round(statistics.median(gate), 3), "full_p50_ms": round(statistics.median(full), 3),
            "iterations": iterations, "size": patient.size}

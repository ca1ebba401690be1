"""The benchmark (bench/, issue 6) still runs: its generator, one in-process measurement,
its wrk report parser and its README section. No timing is asserted: benchmarks print
their numbers and never gate CI."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ lives beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from bench import inprocess, loadgen, report  # noqa: E402
from bench.synth import hook_request, make_patient  # noqa: E402

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:40000/cds-services/SactOrderSelect
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    98.12ms   20.01ms 210.50ms   70.00%
    Req/Sec   160.00     20.00   200.00     70.00%
  Latency Distribution
     50%   95.10ms
     75%  105.20ms
     90%  120.30ms
     99%    1.20s
  480 requests in 3.00s, 1.20MB read
  Non-2xx or 3xx responses: 2
Requests/sec:    159.80
Transfer/sec:    409.00KB
"""


@pytest.fixture(scope="module")
def engine():
    from cds_service.engine import Engine
    from cds_service.knowledge import load_knowledge

    return Engine(load_knowledge())


def test_a_synthetic_patient_has_exactly_the_size_asked_for_and_is_deterministic():
    patient = make_patient(60, now=NOW)
    assert patient.size == 60
    assert patient.counts()["Observation"] >= 10 and "MedicationAdministration" in patient.counts()
    assert make_patient(60, now=NOW).resources == patient.resources


def test_a_hook_request_carries_every_prefetch_key_or_none_for_the_fallback(engine):
    patient = make_patient(50, now=NOW)
    templates = dict(engine.service("SactOrderSelect").prefetch)
    body = hook_request(patient, "order-select", templates)
    assert set(body["prefetch"]) == set(templates)
    assert body["context"]["selections"] == [patient.selection]
    bare = hook_request(patient, "order-select", None, fhir_server="http://127.0.0.1:1")
    assert "prefetch" not in bare and bare["fhirServer"] == "http://127.0.0.1:1"


def test_one_in_process_measurement_splits_the_hook_into_its_steps(engine):
    result = inprocess.measure(engine, make_patient(50, now=NOW), "SactOrderSign", "order-sign",
                               budget_s=0, min_iter=2, max_iter=2, warmup=1)  # fmt: skip
    assert result.iterations == 2
    assert set(result.p50_ms) == set(inprocess.PHASES)
    assert result.cards  # the synthetic case makes rules fire


def test_the_wrk_latency_distribution_is_read_in_milliseconds():
    run = loadgen.parse_wrk(WRK_OUTPUT, "http://127.0.0.1:40000/x", 16, 3)
    assert (run.p50_ms, run.p99_ms, run.requests, run.rps, run.non_2xx) == (95.1, 1200.0, 480, 159.8, 2)
    assert not run.ok


def test_the_readme_section_shows_the_targets_and_the_tables(engine):
    measured = inprocess.measure(engine, make_patient(500, now=NOW), "SactOrderSelect", "order-select",
                                 budget_s=0, min_iter=1, max_iter=1, warmup=0)  # fmt: skip
    results = {"machine": report.machine(), "inprocess": [measured.as_json()], "concurrency": 16,
               "http_skipped": "wrk is not installed"}  # fmt: skip
    results["targets"] = report.targets(results)
    text = report.markdown(results)
    assert text.startswith("## Performance") and "python -m bench" in text
    assert "in-process p50, 500 resources" in text and "SKIPPED" in text

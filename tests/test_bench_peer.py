"""The peer measurement (``python -m bench.peer``, issue 11) without node: the record it
sends the peer, the stand-in value sets, the targets row read from a saved run, and the
"not measured" exit when there is no peer. No timing is asserted (benchmarks never gate CI)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ lives beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from bench import peer, report  # noqa: E402

NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
#: the statin-use prefetch the peer's discovery answers (generated from its CQL's data requirements)
STATIN_USE_PREFETCH = {
    "Patient": "Patient/{{context.patientId}}",
    "Observation": "Observation?patient={{context.patientId}}",
    "Condition": "Condition?patient={{context.patientId}}",
    "Procedure": "Procedure?patient={{context.patientId}}",
    "Encounter": "Encounter?patient={{context.patientId}}",
    "MedicationStatement": "MedicationStatement?patient={{context.patientId}}",
    "MedicationRequest": "MedicationRequest?patient={{context.patientId}}",
    "MedicationDispense": "MedicationDispense?patient={{context.patientId}}",
}


def saved_run(ratio_rps: float, peer_rps: float = 1.5, peer_cpu: float = 640.0, our_cpu: float = 7.3) -> dict:
    """A peer.json as ``python -m bench.peer`` writes it (figures chosen per test)."""
    side = {"concurrency": 4, "rps": peer_rps, "p50_ms": 2600.0, "p99_ms": 7900.0, "cpu_ms_per_request": peer_cpu}
    ours = {"concurrency": 16, "rps": peer_rps * ratio_rps, "p50_ms": 120.0, "p99_ms": 210.0,
            "cpu_ms_per_request": our_cpu}  # fmt: skip
    return {"date": "2026-12-02 18:00 UTC", "size": 500, "seconds": 20.0, "repeat": 2, "peer": side, "ours": ours,
            "ratio_rps": ratio_rps, "ratio_cpu": round(peer_cpu / our_cpu, 1), "load_average_before": [1.2, 1.0, 0.9],
            "load_average_after": [1.6, 1.1, 0.9], "met": ratio_rps >= 100}  # fmt: skip


def test_the_peer_row_reads_a_saved_run_and_judges_throughput_against_100x(tmp_path):
    path = tmp_path / "peer.json"
    path.write_text(json.dumps(saved_run(85.3)))
    row = report.peer_target(path)
    assert row["goal"] == ">= 100x" and row["met"] is False
    assert "85x throughput" in row["measured"] and "88x CPU per request" in row["measured"]
    assert "c=4" in row["measured"] and "c=16" in row["measured"] and "2 x 20 s" in row["measured"]
    assert "2026-12-02 18:00 UTC" in row["measured"] and "load average 1.2 before" in row["measured"]
    path.write_text(json.dumps(saved_run(104.0)))
    assert report.peer_target(path)["met"] is True


def test_without_a_saved_run_or_with_a_broken_one_the_peer_row_says_not_measured(tmp_path):
    for content in (None, "{not json", json.dumps({"date": "2026-12-02"})):
        path = tmp_path / "peer.json"
        if content is not None:
            path.write_text(content)
        row = report.peer_target(path)
        assert row["met"] == "not measured" and "python -m bench.peer" in row["measured"]
    results = {"machine": report.machine(), "http_skipped": "wrk is not installed"}
    assert any(t["target"].startswith("peer ratio") for t in report.targets(results))


def test_bench_peer_exits_0_and_says_not_measured_without_a_peer(tmp_path):
    out = tmp_path / "peer.json"
    proc = subprocess.run([sys.executable, "-m", "bench.peer", "--peer-dir", str(tmp_path / "no-peer"),
                           "--output", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "peer ratio: not measured" in proc.stdout and "Traceback" not in proc.stderr
    assert not out.exists()


def test_the_peer_record_has_the_asked_size_and_the_data_statin_use_reads():
    patient = peer.make_peer_patient(500, now=NOW)
    assert patient.size == 500 and patient.resources == peer.make_peer_patient(500, now=NOW).resources
    counts = patient.counts()
    assert counts["Observation"] >= 250 and all(counts[t] > 0 for t in peer.MIX)
    body = peer.peer_request(patient, STATIN_USE_PREFETCH)
    assert body["hook"] == "patient-view" and body["context"]["patientId"] == patient.pid
    sent = body["prefetch"]
    assert set(sent) == set(STATIN_USE_PREFETCH)
    assert 1 + sum(len(sent[k]["entry"]) for k in sent if k != "Patient") == 500
    # what the statin recommendation is decided on: age 40-75, lipids, risk score, smoking, risk factors
    born = datetime.fromisoformat(sent["Patient"]["birthDate"]).replace(tzinfo=UTC)
    assert 40 <= (NOW - born).days / 365.25 <= 75
    loincs = {e["resource"]["code"]["coding"][0]["code"] for e in sent["Observation"]["entry"]}
    assert {"18262-6", "2085-9", "79423-0", "72166-2"} <= loincs
    problems = {e["resource"]["code"]["coding"][0]["code"] for e in sent["Condition"]["entry"]}
    stand_in = {code for codes in peer.STAND_IN_CODES.values() for _, code in codes}
    assert {"38341003", "44054006"} <= problems & stand_in  # hypertension, diabetes: in their value sets


def test_stand_in_value_sets_cover_the_peer_library_and_never_replace_a_real_cache(tmp_path):
    libs = tmp_path / "config" / "libraries" / "statin-use"
    libs.mkdir(parents=True)
    defs = [{"name": "LDL Test", "id": "https://cts.nlm.nih.gov/fhir/ValueSet/2.16.840.1.113883.3.464.1003.198.11.1029"},
            {"name": "Not in the table", "id": "https://cts.nlm.nih.gov/fhir/ValueSet/1.2.3"}]  # fmt: skip
    (libs / "Shared.json").write_text(json.dumps({"library": {"valueSets": {"def": defs}}}))
    (libs / "FHIRHelpers.json").write_text(json.dumps({"library": {}}))
    assert peer.ensure_value_sets(tmp_path).startswith("stand-in value sets (2,")
    db = json.loads((tmp_path / ".vsac_cache" / "valueset-db.json").read_text())
    ldl = db["2.16.840.1.113883.3.464.1003.198.11.1029"]["bench-stand-in"]["codes"]
    assert {"code": "18262-6", "system": "http://loinc.org"} in ldl
    assert db["1.2.3"]["bench-stand-in"]["codes"] == []  # present (no VSAC download), matches nothing
    real = tmp_path / "real-peer"
    (real / ".vsac_cache").mkdir(parents=True)
    (real / ".vsac_cache" / "valueset-db.json").write_text('{"1.2.3": {}}')
    assert peer.ensure_value_sets(real) == "VSAC cache found in the peer directory"
    assert (real / ".vsac_cache" / "valueset-db.json").read_text() == '{"1.2.3": {}}'


def test_a_checkout_without_npm_install_is_not_measured(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "www").write_text("// the peer's start script\n")
    why = peer.missing(tmp_path)
    assert why is not None and ("npm install" in why or "node is not installed" in why)


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("wrk") is None, reason="needs node and wrk")
def test_a_peer_that_does_not_start_is_reported_not_measured_and_exits_0(tmp_path):
    broken = tmp_path / "peer"
    (broken / "bin").mkdir(parents=True)
    (broken / "node_modules").mkdir()
    (broken / "bin" / "www").write_text("console.error('cannot start'); process.exit(3);\n")
    out = tmp_path / "peer.json"
    proc = subprocess.run([sys.executable, "-m", "bench.peer", "--peer-dir", str(broken), "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "peer ratio: not measured" in proc.stdout and "exited with 3" in proc.stdout
    assert "Traceback" not in proc.stderr and not out.exists()

"""Helpers for the replay tests: small scenario documents and a uvicorn server in a thread."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn


def small_bundle(*, with_azole: bool = False) -> dict[str, Any]:
    """A child with a drafted inotuzumab dose (and, optionally, active fluconazole)."""
    entries: list[dict[str, Any]] = [
        {"resource": {"resourceType": "Patient", "id": "small-1", "gender": "female", "birthDate": "today-3300d"}},
        {"resource": {"resourceType": "Observation", "id": "bili-1", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "14631-6"}]},
                      "subject": {"reference": "Patient/small-1"}, "effectiveDateTime": "today-1d",
                      "valueQuantity": {"value": 8, "unit": "umol/L", "system": "http://unitsofmeasure.org", "code": "umol/L"},
                      "referenceRange": [{"high": {"value": 21, "unit": "umol/L"}}]}},
        {"resource": {"resourceType": "MedicationRequest", "id": "draft-ino", "status": "draft", "intent": "order",
                      "subject": {"reference": "Patient/small-1"}, "authoredOn": "now-1h",
                      "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01FB01"}],
                                                    "text": "inotuzumab ozogamicin"},
                      "dosageInstruction": [{"timing": {"event": ["today"]},
                                             "doseAndRate": [{"doseQuantity": {"value": 0.8, "unit": "mg"}}]}]}},
    ]
    if with_azole:
        entries.append({"resource": {
            "resourceType": "MedicationRequest", "id": "fluconazole-1", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/small-1"}, "authoredOn": "today-20d",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "J02AC01"}],
                                          "text": "fluconazole"},
            "dosageInstruction": [{"text": "Fluconazole 100 mg PO daily", "route": {"text": "Oral"}}]}})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def write_scenario(folder: Path, name: str, *, title: str, expect: dict[str, Any] | None,
                   with_azole: bool = False) -> Path:
    header: dict[str, Any] = {"title": title, "hook": "order-select", "selections": ["MedicationRequest/draft-ino"]}
    if expect is not None:
        header["expect"] = expect
    path = folder / name
    path.write_text(json.dumps({"scenario": header, "bundle": small_bundle(with_azole=with_azole)}, indent=1))
    return path


#: An expectation no card can meet: the text fragment appears in no card.
IMPOSSIBLE = {"cards": [{"rule": "ino2-eligibility", "contains": ["zz-no-card-says-this-zz"]}]}
#: An expectation every run meets whatever the rules do: a rule code that cannot fire
#: on order-select for a bundle with nothing to report about it is not asserted, so only
#: "absent" of an unrelated rule is used (no cycle history -> no cycle-limit card).
HARMLESS = {"absent": ["cycle-limit"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_socket() -> socket.socket:
    """A socket bound to 127.0.0.1:<free port> (so settings can name the port before serving)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def uvicorn_thread(app: Any, sock: socket.socket | None = None) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1:<free port> in a thread; yields its URL."""
    sock = sock or loopback_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

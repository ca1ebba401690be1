"""The wheel carries its knowledge: after a plain (non-editable) install, every command works
from a directory that has nothing to do with the checkout.

Builds the wheel with pip, installs it into a fresh venv and runs `validate`, `bundle`,
`replay` (a whole-record scenario) and `serve` (discovery over HTTP) from a temporary
directory, with ``PYTHONPATH`` cleared so the checkout cannot be imported by accident. The
venv sees the running environment's dependencies through a ``.pth`` file written *after*
the wheel is installed, so nothing is downloaded but the build backend (and a test cannot
pass by importing the editable checkout: ``cds_service.__file__`` is asserted).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
from _replay_support import free_port

from cds_service.knowledge._schema import schema_path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "scenarios" / "azole-inotuzumab-with-fluconazole-draft-warns.json"


def _run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=180, check=False, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("wheel")
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(ROOT)])
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (base / "dist").glob("sact_cds-*.whl")
    venv = base / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    pip = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)])
    assert pip.returncode == 0, pip.stderr[-3000:]
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # Dependencies from the running environment, AFTER the venv's own site-packages.
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_outer_environment.pth").write_text("\n".join(sorted(outer)) + "\n", encoding="utf-8")
    work = base / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_") and k != "PYTHONPATH"}
    env.update(CDS_FHIR_SCHEMA=str(schema_path()), CDS_CACHE_DIR=str(base / "cache"), NO_COLOR="1", COLUMNS="200")
    return {"bin": venv / "bin", "python": python, "cwd": work, "env": env, "wheel": wheel}


def _cli(installed: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    return _run([str(Path(str(installed["bin"])) / "cds-service"), *args], cwd=installed["cwd"], env=installed["env"])


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: dict[str, object]) -> None:
    done = _run([str(installed["python"]), "-c", "import cds_service, cds_service.resources as r; "
                 "print(cds_service.__file__); print(r.data_root())"], cwd=installed["cwd"], env=installed["env"])
    module, data = done.stdout.split()
    assert "site-packages" in module and not module.startswith(str(ROOT))
    assert data.endswith("cds_service/_data") and not data.startswith(str(ROOT))


def test_validate_from_any_directory(installed: dict[str, object]) -> None:
    done = _cli(installed, "validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 problems" in done.stdout


def test_bundle_from_any_directory(installed: dict[str, object]) -> None:
    done = _cli(installed, "bundle", "-o", "knowledge.json")
    assert done.returncode == 0, done.stdout + done.stderr
    bundle = json.loads((Path(str(installed["cwd"])) / "knowledge.json").read_text(encoding="utf-8"))
    assert bundle["type"] == "transaction"
    types = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"PlanDefinition", "ActivityDefinition", "ValueSet", "CodeSystem", "Questionnaire"} <= types


def test_replay_a_scenario_from_any_directory(installed: dict[str, object]) -> None:
    shutil.copy(SCENARIO, Path(str(installed["cwd"])) / "scenario.json")
    done = _cli(installed, "replay", "scenario.json", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "azole-antifungal" in done.stdout
    assert "Traceback" not in done.stderr


def test_trace_check_from_any_directory(installed: dict[str, object]) -> None:
    done = _cli(installed, "trace", "--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_serve_answers_discovery(installed: dict[str, object]) -> None:
    port = free_port()
    log = Path(str(installed["cwd"])) / "serve.log"
    with log.open("w", encoding="utf-8") as out:
        server = subprocess.Popen(
            [str(Path(str(installed["bin"])) / "cds-service"), "serve", "--port", str(port)],
            cwd=installed["cwd"], env=installed["env"], stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 40
        while True:
            assert server.poll() is None, log.read_text(encoding="utf-8")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/cds-services", timeout=2) as response:
                    services = json.loads(response.read())["services"]
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not answer within 40 s"
                time.sleep(0.2)
        assert {s["hook"] for s in services} == {"order-select", "order-sign"}
    finally:
        server.terminate()
        server.wait(timeout=15)
    # The store went where the settings say: ./data under the directory serve ran in.
    assert (Path(str(installed["cwd"])) / "data" / "audit.sqlite").is_file()

"""No user mistake ends in a traceback: each known one gets a message that names the problem
and a non-zero exit (GUIDE: "a CLI message and non-zero exit; never a traceback").

The commands run as a person runs them (the `cds-service` entry point in a subprocess,
from a scratch directory), so a traceback printed by Python itself would be seen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "scenarios" / "azole-inotuzumab-with-fluconazole-draft-warns.json"

#: (id, arguments, a phrase the message must contain)
MISTAKES: list[tuple[str, list[str], str]] = [
    ("replay-binary-file", ["replay", "binary.json"], "not a UTF-8 text file"),
    ("replay-latin-1-file", ["replay", "latin1.json"], "not a UTF-8 text file"),
    ("replay-folder-with-a-binary-file", ["replay", "mixed"], "not a UTF-8 text file"),
    ("replay-missing-file", ["replay", "missing.json"], "does not exist"),
    ("replay-not-json", ["replay", "notes.txt"], "not valid JSON"),
    ("replay-junit-under-a-file", ["replay", "scenario.json", "--junit", "afile/report.xml"], "not a folder"),
    ("replay-html-under-a-file", ["replay", "scenario.json", "--html", "afile/report.html"], "not a folder"),
    ("bundle-output-under-a-file", ["bundle", "-o", "afile/bundle.json"], "not a folder"),
    ("trace-output-under-a-file", ["trace", "--output", "afile/trace.md"], "not a folder"),
    ("readme-under-a-file", ["readme", "afile/README.md", "--check"], "not a folder"),
    ("cards-doc-under-a-file", ["cards-doc", "--write", "afile/README.md", "--check"], "not a folder"),
    ("audit-unknown-scheme", ["audit", "--database-url", "foo://x/y"], "unknown database scheme 'foo'"),
    ("audit-not-a-url", ["audit", "--database-url", "not a url"], "not a database URL"),
    ("audit-no-store-here", ["audit"], "no audit store at"),
    ("audit-csv-under-a-file", ["audit", "--database-url", "sqlite:///store.sqlite", "--csv", "afile/x.csv"],
     "not a folder"),
    ("audit-missing-config", ["audit", "--config", "missing.toml"], "cannot read config file"),
    ("serve-missing-config", ["serve", "--config", "missing.toml"], "cannot read config file"),
    ("serve-bad-port", ["serve", "--port", "99999"], "port must be"),
    ("serve-unauthenticated-on-network", ["serve", "--host", "0.0.0.0"], "without authentication"),
    ("serve-missing-knowledge", ["serve", "--knowledge", "nowhere"], "refusing to start"),
    ("validate-missing-knowledge", ["validate", "--knowledge", "nowhere"], "knowledge directory does not exist"),
    ("replay-jwt-key-without-url", ["replay", "scenario.json", "--jwt-key", "scenario.json"], "--url"),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("mistakes")
    (work / "binary.json").write_bytes(bytes(range(256)) * 4)
    (work / "latin1.json").write_bytes('{"scenario": {"title": "Café"}}'.encode("latin-1"))
    (work / "notes.txt").write_text("not json", encoding="utf-8")
    (work / "mixed").mkdir()
    shutil.copy(SCENARIO, work / "mixed" / "good.json")
    (work / "mixed" / "bad.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    shutil.copy(SCENARIO, work / "scenario.json")
    (work / "afile").write_text("a file, not a folder", encoding="utf-8")
    import sqlite3

    sqlite3.connect(work / "store.sqlite").close()
    return work


@pytest.mark.parametrize(("args", "phrase"), [pytest.param(a, p, id=i) for i, a, p in MISTAKES])
def test_a_user_mistake_gets_a_message_and_a_non_zero_exit(scratch: Path, args: list[str], phrase: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "200"
    done = subprocess.run([sys.executable, "-c", "from cds_service.cli import main; main()", *args],
                          cwd=scratch, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    assert phrase in output, output
    assert not (scratch / "data").exists(), "a command created ./data"

"""Shared test plumbing: replay scenarios collected as test items, one in-process service.

``tests/scenarios/*.json`` (names not starting with ``_``) are collected by
:func:`pytest_collect_file` as one item each, named by the scenario's ``title`` (read as
a sentence), and run through the replay library against the real app in-process
(``create_app()`` with the bundled knowledge and an in-memory SQLite audit store), the way
fhirpathpy runs its spec test files (STYLE.md §13). The app is started once per session.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cds_service.replay import run
from cds_service.replay._compare import rule_of
from cds_service.replay.scenario import Scenario, ScenarioError, load_scenario

SCENARIOS = Path(__file__).parent / "scenarios"
REPO = Path(__file__).resolve().parents[1]


class ReplaySession:
    """One in-process service on one event loop, shared by every scenario of the session."""

    def __init__(self) -> None:
        self._runner: asyncio.Runner | None = None
        self._cm: Any = None
        self._replayer: run.Replayer | None = None

    def replayer(self) -> run.Replayer:
        if self._replayer is None:
            self._runner = asyncio.Runner()
            self._cm = run.in_process()
            self._replayer = self._runner.run(self._cm.__aenter__())
        return self._replayer

    def replay(self, scenario: Scenario, now: datetime, **kw: Any) -> run.ScenarioResult:
        replayer = self.replayer()
        assert self._runner is not None
        return self._runner.run(replayer.replay(scenario, now, **kw))

    def run(self, coroutine: Any) -> Any:
        self.replayer()
        assert self._runner is not None
        return self._runner.run(coroutine)

    def close(self) -> None:
        if self._runner is not None:
            try:
                self._runner.run(self._cm.__aexit__(None, None, None))
            finally:
                self._runner.close()
        self._runner = self._cm = self._replayer = None


_SESSION = ReplaySession()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _SESSION.close()


@pytest.fixture(scope="session")
def replay_session() -> Iterator[ReplaySession]:
    """The shared in-process service."""
    yield _SESSION


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if (
        file_path.suffix == ".json"
        and file_path.parent == SCENARIOS
        and not file_path.name.startswith(("_", "."))
    ):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            scenario = load_scenario(self.path)
        except ScenarioError as exc:
            yield ScenarioItem.from_parent(self, name=self.path.stem, scenario=None, error=exc)
            return
        yield ScenarioItem.from_parent(self, name=scenario.title, scenario=scenario, error=None)


class ScenarioFailed(Exception):
    """The cards differ from the scenario's expectations."""


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario | None, error: ScenarioError | None, **kw: Any) -> None:
        super().__init__(**kw)
        self.scenario = scenario
        self.error = error

    def runtest(self) -> None:
        if self.error is not None:
            raise self.error
        assert self.scenario is not None
        result = _SESSION.replay(self.scenario, datetime.now(UTC))
        if result.status == "error":
            raise ScenarioFailed(f"could not replay: {result.error}")
        if self.scenario.expect is None:
            raise ScenarioFailed("a corpus scenario must state its expected cards (scenario.expect)")
        if result.status != "passed":
            shown = "\n".join(
                f"    [{c.get('indicator')}] {rule_of(c)}: {c.get('summary')}" for c in result.cards
            )
            diffs = "\n".join(f"  - {d}" for d in result.diffs)
            raise ScenarioFailed(f"expectations not met:\n{diffs}\n  cards shown:\n{shown or '    none'}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, (ScenarioFailed, ScenarioError)):
            return f"{self.path.name}: {excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario: {self.name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on each database the store claims to support: a fresh SQLite file, and
    the PostgreSQL that CI provides (``CDS_TEST_POSTGRES_URL``; skipped, saying so, without it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite'}"
    url = os.environ.get("CDS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set CDS_TEST_POSTGRES_URL to run against PostgreSQL")
    return url

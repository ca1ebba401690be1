"""Replay FHIR bundles as CDS Hooks calls and check the cards (`cds-service replay`).

Testers' tool (README "Testers"): a scenario is a FHIR Bundle plus a small header
(docs/architecture.md §8). :func:`load_scenario` validates it; :class:`Replayer` builds the
request an EHR would send (prefetch filled from the service's own discovery templates)
and sends it in-process or to a running server; :mod:`report <cds_service.replay.report>`
prints, writes JUnit XML and HTML; :mod:`fhir_server <cds_service.replay.fhir_server>`
serves a scenario as a read-only FHIR endpoint.
"""

from cds_service.replay._compare import Diff, compare
from cds_service.replay.dates import resolve_dates, shift_dates
from cds_service.replay.request import BuiltRequest, build_request
from cds_service.replay.run import (
    JwtSigner,
    Replayer,
    ReplayError,
    ScenarioResult,
    in_process,
    remote,
    replay_all,
)
from cds_service.replay.scenario import (
    CardExpectation,
    Expectation,
    Problem,
    ResolvedScenario,
    Scenario,
    ScenarioError,
    collect_paths,
    iter_problems,
    load_scenario,
)

__all__ = [
    "BuiltRequest",
    "CardExpectation",
    "Diff",
    "Expectation",
    "JwtSigner",
    "Problem",
    "ReplayError",
    "Replayer",
    "ResolvedScenario",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "build_request",
    "collect_paths",
    "compare",
    "in_process",
    "iter_problems",
    "load_scenario",
    "remote",
    "replay_all",
    "resolve_dates",
    "shift_dates",
]

"""Prometheus metrics, one registry per app so tests and several apps never collide.

With several uvicorn workers set ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode); ``/metrics`` then aggregates every worker.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's counters and histograms (names follow Prometheus conventions)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hook_latency = Histogram(
            "cds_hook_request_seconds",
            "Latency of hook calls, by service",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.hook_responses = Counter(
            "cds_hook_responses",
            "Hook responses, by service and HTTP status",
            ["service", "status"],
            registry=r,
        )
        self.cards = Counter("cds_cards", "Cards returned, by rule code", ["rule_code"], registry=r)
        self.fallback_fetches = Counter(
            "cds_fallback_fetches",
            "Prefetch keys fetched from the client's fhirServer, by outcome",
            ["outcome"],
            registry=r,
        )
        self.errors = Counter(
            "cds_errors", "Errors, by kind (audit, auth, client_disconnect, internal, fetch)", ["kind"], registry=r
        )
        self.feedback = Counter(
            "cds_feedback_items", "Feedback items received, by outcome", ["outcome"], registry=r
        )

    def render(self) -> Response:
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def metrics_endpoint(request: Request) -> Response:
    return request.app.state.cds.metrics.render()

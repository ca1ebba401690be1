"""The CDS Hooks 2.0 HTTP service: discovery, hook endpoints, feedback, health, metrics."""

from cds_service.api.app import ServiceState, app_from_env, build_engine, create_app

__all__ = [
    "ServiceState",
    "app_from_env",
    "build_engine",
    "create_app",
]

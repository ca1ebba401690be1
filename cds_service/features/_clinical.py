"""The registry of every clinical case feature (issue 3), for the engine's default use."""

from __future__ import annotations

from cds_service.features import (
    _body,
    _conflicts,
    _course,
    _eligibility,
    _labs,
    _orders,
    _response,
    _vod,
)
from cds_service.features._registry import FeatureRegistry

#: The modules whose ``@feature`` functions make up the clinical feature set.
CLINICAL_MODULES = (_orders, _course, _conflicts, _labs, _body, _response, _eligibility, _vod)


def default_registry() -> FeatureRegistry:
    """A new registry holding every clinical feature (one per engine instance)."""
    return FeatureRegistry.from_modules(CLINICAL_MODULES)

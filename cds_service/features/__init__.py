"""Case features: pure functions (record, context) -> FeatureValue, each citing its source."""

from cds_service.features._clinical import default_registry
from cds_service.features._policy import SitePolicy
from cds_service.features._registry import (
    Evidence,
    FeatureContext,
    FeatureFn,
    FeatureRegistry,
    FeatureValue,
    OrderGuard,
    feature,
)

__all__ = [
    "Evidence",
    "FeatureContext",
    "FeatureFn",
    "FeatureRegistry",
    "FeatureValue",
    "OrderGuard",
    "SitePolicy",
    "default_registry",
    "feature",
]

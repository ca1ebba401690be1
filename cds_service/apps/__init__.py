"""Apps the service serves beside its hooks (api layer: they speak HTTP)."""

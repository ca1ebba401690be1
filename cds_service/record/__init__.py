"""The patient's record for one hook invocation, built leniently from what clients send."""

from cds_service.record._build import build_record, normalise
from cds_service.record._fetch import FetchResult, FhirServerPolicy, complete_prefetch
from cds_service.record._model import DataNote, PatientRecord, Resource, reference_of

__all__ = [
    "DataNote",
    "FetchResult",
    "FhirServerPolicy",
    "PatientRecord",
    "Resource",
    "build_record",
    "complete_prefetch",
    "normalise",
    "reference_of",
]

"""The few constants the code needs: system, extension and canonical URLs, rule topics.

Everything clinical (thresholds, doses, codes, card text) lives in the FHIR artifacts;
what stays here are identifiers defined by the registries and specifications cited:

- CDS Hooks 2.0 (https://cds-hooks.hl7.org/2.0/): card indicators ``info|warning|critical``.
- FHIR R4 (https://hl7.org/fhir/R4/): ``request-priority`` routine/urgent/stat, which the
  HL7 "Using FHIR Clinical Reasoning with CDS Hooks" ConceptMap maps to the card indicator.
- HL7 terminology (https://terminology.hl7.org/): the code-system URIs below.
- CPG-on-FHIR 2.0.0 (http://hl7.org/fhir/uv/cpg/): activity profile and extension URLs.
"""

from __future__ import annotations

from typing import Final

#: Version of the knowledge package: every artifact's ``version`` must equal it.
KNOWLEDGE_VERSION: Final = "0.2.1"

CANONICAL_BASE: Final = "https://sact-cds.org/fhir"
STRUCTURE_DEFINITION_BASE: Final = f"{CANONICAL_BASE}/StructureDefinition"

# Our own code systems.
RULE_SYSTEM: Final = f"{CANONICAL_BASE}/CodeSystem/sact-cds-rule"
CRITERION_SYSTEM: Final = f"{CANONICAL_BASE}/CodeSystem/ino2-criterion"
OVERRIDE_REASON_SYSTEM: Final = f"{CANONICAL_BASE}/CodeSystem/override-reason"
RESPONSE_STATUS_SYSTEM: Final = f"{CANONICAL_BASE}/CodeSystem/response-status"
DESIGNATION_USE_SYSTEM: Final = f"{CANONICAL_BASE}/CodeSystem/designation-use"
#: CodeSystem designation use: the short form a card shows for a concept ("not in CR/CRi").
DESIGNATION_CARD_SHORT: Final = "card-short"
INO2_QUESTIONNAIRE: Final = f"{CANONICAL_BASE}/Questionnaire/Ino2Attestation"

# Our own extensions (defined as StructureDefinitions in fhir_profiles/).
EXT_SOURCE_STATEMENT: Final = f"{STRUCTURE_DEFINITION_BASE}/source-statement"
EXT_MATCH_TEXT: Final = f"{STRUCTURE_DEFINITION_BASE}/valueset-match-text"
EXT_EXCLUDE_ROUTE_TEXT: Final = f"{STRUCTURE_DEFINITION_BASE}/valueset-exclude-route-text"
EXT_CDS_LINK_TYPE: Final = f"{STRUCTURE_DEFINITION_BASE}/cds-link-type"
EXT_CDS_LINK_CONDITION: Final = f"{STRUCTURE_DEFINITION_BASE}/cds-link-condition"
EXT_CDS_LINK_ORDERS: Final = f"{STRUCTURE_DEFINITION_BASE}/cds-link-orders"

# Card extension keys (CDS Hooks 2.0 §extensions: reverse-domain names).
CARD_EXT_KNOWLEDGE_VERSION: Final = "org.sact-cds.knowledge-version"
CARD_EXT_CRITERIA: Final = "org.sact-cds.criteria"
CARD_EXT_EVIDENCE: Final = "org.sact-cds.evidence"

# HL7 / external code systems (https://terminology.hl7.org/).
LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
ATC: Final = "http://www.whocc.no/atc"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM: Final = "http://unitsofmeasure.org"
DOSE_RATE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/dose-rate-type"
NCIT: Final = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"

# FHIR core and CPG.
EXT_TIMING_DAYS_OF_CYCLE: Final = "http://hl7.org/fhir/StructureDefinition/timing-daysOfCycle"
CPG_MEDICATION_REQUEST_ACTIVITY: Final = (
    "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-medicationrequestactivity"
)
CPG_MEDICATION_REQUEST: Final = "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-medicationrequest"

#: FHIR request-priority -> CDS Hooks card indicator (HL7 CDS-on-FHIR ConceptMap).
PRIORITY_TO_INDICATOR: Final = {"routine": "info", "urgent": "warning", "stat": "critical"}

#: The rule topics of CodeSystem sact-cds-rule (issue "rule engine"; one card rule each).
RULE_CODES: Final = (
    "ino2-eligibility",
    "azole-antifungal",
    "hepatotoxicity-vod",
    "liver-function-hold",
    "blood-counts",
    "cycle-limit",
    "remission-dosing",
    "bsa-dose",
    "dose-schedule",
    "premedication",
    "monotherapy",
    "treatment-break",
    "supportive-care",
    "data-unavailable",
)

#: INO2 criterion codes, one per bullet of NHS England CDF form INO2 (v1.361).
CRITERION_CODES: Final = (
    "application-consultant",
    "vod-risk-awareness",
    "rr-cd22-bcp-all",
    "ph-status-tki",
    "prior-intensive-chemo",
    "child",
    "puberty-dosing",
    "principal-treatment-centre",
    "mdt-discussion",
    "performance-status",
    "treatment-duration-policy",
    "monotherapy",
    "no-planned-break",
    "unlicensed-policy",
    "spc-use",
)

__all__ = sorted(
    name for name in dir() if name.isupper() and not name.startswith("_")
)

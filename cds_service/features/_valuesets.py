"""The canonicals the clinical features read (ValueSets, regimens), in one table.

The ValueSets themselves (codes from ``provenance/verified-codes.json``, names where no
code is verified: architecture.md §1.2) live in ``plan_definitions/terminology/``; a
feature only names them. Membership is asked of ``ctx.terminology``
(``contains`` for a CodeableConcept, ``matches_medication`` for a medication resource).
The regimens (clinical-protocol PlanDefinitions in ``plan_definitions/regimen/``) are
read as schedules from ``ctx.regimens`` (cycle lengths, doses per cycle, mg/m² per day).
"""

from __future__ import annotations

from typing import Final

from cds_service.knowledge import terms
from cds_service.knowledge.terms import CANONICAL_BASE

_VS: Final = f"{CANONICAL_BASE}/ValueSet"
_PD: Final = f"{CANONICAL_BASE}/PlanDefinition"

# Regimens (keys of ``FeatureContext.regimens``)
#: NZ "Cycle 1, and subsequent cycles for patients who do not achieve CR or CRi": cycle 1
#: for every patient, later cycles when not in CR/CRi; the course is counted on it.
REGIMEN_NOT_IN_CR: Final = f"{_PD}/InotuzumabPaedRrBallNotInCr"
#: Later cycles once CR/CRi is achieved (label doses, clinical.md §1.5; a stub regimen).
REGIMEN_CR_CRI: Final = f"{_PD}/InotuzumabPaedRrBallCrCri"

# Medications
INOTUZUMAB: Final = f"{_VS}/InotuzumabOzogamicin"
SYSTEMIC_AZOLES: Final = f"{_VS}/SystemicAzoleAntifungals"
TKI_FIRST_GENERATION: Final = f"{_VS}/BcrAblTkiFirstGeneration"
TKI_SECOND_GENERATION: Final = f"{_VS}/BcrAblTkiSecondGeneration"
TKI_THIRD_GENERATION: Final = f"{_VS}/BcrAblTkiThirdGeneration"
TKI_ASCIMINIB: Final = f"{_VS}/BcrAblTkiAsciminib"
OTHER_SACT: Final = f"{_VS}/OtherSactAgents"
LORATADINE: Final = f"{_VS}/Loratadine"
PARACETAMOL: Final = f"{_VS}/Paracetamol"
DEXAMETHASONE: Final = f"{_VS}/Dexamethasone"

# Laboratory results and measurements
TOTAL_BILIRUBIN: Final = f"{_VS}/TotalBilirubin"
ALT: Final = f"{_VS}/Alt"
AST: Final = f"{_VS}/Ast"
ALP: Final = f"{_VS}/Alp"
NEUTROPHIL_COUNT: Final = f"{_VS}/NeutrophilCount"
PLATELET_COUNT: Final = f"{_VS}/PlateletCount"
BODY_HEIGHT: Final = f"{_VS}/BodyHeight"
BODY_WEIGHT: Final = f"{_VS}/BodyWeight"
BODY_SURFACE_AREA: Final = f"{_VS}/BodySurfaceArea"
ECOG: Final = f"{_VS}/EcogPerformanceStatus"
KARNOFSKY: Final = f"{_VS}/KarnofskyPerformanceStatus"
LANSKY: Final = f"{_VS}/LanskyPerformanceStatus"

# Conditions, procedures, findings
B_ALL: Final = f"{_VS}/BCellAcuteLymphoblasticLeukaemia"
HSCT: Final = f"{_VS}/HaematopoieticStemCellTransplant"
HEPATIC_VOD: Final = f"{_VS}/HepaticVenoOcclusiveDisease"
SERIOUS_LIVER_DISEASE: Final = f"{_VS}/SeriousLiverDisease"
GILBERT_OR_HAEMOLYSIS: Final = f"{_VS}/GilbertSyndromeOrHaemolysis"
COMPLETE_REMISSION: Final = f"{_VS}/CompleteRemission"

#: The INO2 attestation Questionnaire (fhir_profiles/; canonical in terms.py); items are the
#: criterion codes plus ``response-status``, ``mrd-negative`` and ``hsct-planned``.
INO2_QUESTIONNAIRE: Final = terms.INO2_QUESTIONNAIRE

#: Premedication ValueSets by the name used in feature values and card text.
PREMEDICATIONS: Final = {
    "loratadine": LORATADINE,
    "paracetamol": PARACETAMOL,
    "dexamethasone": DEXAMETHASONE,
}

#: Every TKI ValueSet, by generation label.
TKI_GENERATIONS: Final = {
    "first": TKI_FIRST_GENERATION,
    "second": TKI_SECOND_GENERATION,
    "third": TKI_THIRD_GENERATION,
    "asciminib": TKI_ASCIMINIB,
}

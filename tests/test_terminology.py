"""ValueSet membership, by code and by name, on the real ValueSets of plan_definitions/terminology.

The cases are the ones a wrong ValueSet would get wrong at the bedside: a systemic azole
missed, or a topical azole or an echinocandin flagged (NZ: "Prophylaxis with azole
antifungals should be withheld"), a TKI put in the wrong generation (INO2 "at least one
second or third generation TKI"), a laboratory code not recognised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.errors import ArtifactInvalid, UnknownArtifact
from cds_service.knowledge._terminology import Terminology
from cds_service.knowledge.terms import ATC, KNOWLEDGE_VERSION, LOINC, RXNORM, SNOMED
from cds_service.record._model import PatientRecord

TERMINOLOGY_DIR = Path(__file__).resolve().parents[1] / "plan_definitions" / "terminology"
VS = "https://sact-cds.org/fhir/ValueSet/"
AZOLES = VS + "SystemicAzoleAntifungals"


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    resources = [json.loads(p.read_text("utf-8")) for p in sorted(TERMINOLOGY_DIR.glob("*.json"))]
    return Terminology.from_resources(resources)


def order(concept: dict[str, Any] | None = None, route: str | None = None, **more: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "MedicationRequest", "id": "draft", "status": "draft", **more}
    if concept is not None:
        resource["medicationCodeableConcept"] = concept
    if route is not None:
        resource["dosageInstruction"] = [{"route": {"text": route}}]
    return resource


def coded(system: str, code: str, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": system, "code": code}]}
    if text:
        concept["text"] = text
    return concept


# --------------------------------------------------------------------------- azoles


def test_fluconazole_coded_by_atc_is_a_systemic_azole(terminology: Terminology) -> None:
    assert terminology.matches_medication(AZOLES, order(coded(ATC, "J02AC01")))


def test_an_azole_not_listed_but_under_j02ac_matches_by_the_atc_group(terminology: Terminology) -> None:
    assert terminology.contains(AZOLES, {"system": ATC, "code": "J02AC99"})


def test_fluconazole_named_only_in_the_order_text_matches(terminology: Terminology) -> None:
    assert terminology.matches_medication(AZOLES, order({"text": "Fluconazole 50 mg capsule"}))


def test_names_match_whole_words_case_insensitively(terminology: Terminology) -> None:
    assert terminology.contains(AZOLES, {"text": "POSACONAZOLE 100mg gastro-resistant tablets"})
    assert not terminology.contains(AZOLES, {"text": "fluconazoles-like compound"})


def test_voriconazole_by_rxnorm_and_fluconazole_by_snomed_match(terminology: Terminology) -> None:
    assert terminology.contains(AZOLES, {"system": RXNORM, "code": "121243"})
    assert terminology.contains(AZOLES, coded(SNOMED, "31865003"))


def test_miconazole_with_a_topical_route_is_not_a_systemic_azole(terminology: Terminology) -> None:
    assert not terminology.matches_medication(AZOLES, order({"text": "Miconazole 2% cream"}, route="Topical"))


def test_clotrimazole_cream_is_not_a_systemic_azole(terminology: Terminology) -> None:
    assert not terminology.matches_medication(AZOLES, order({"text": "Clotrimazole 1% cream"}, route="Cutaneous use"))


def test_miconazole_oral_gel_by_medication_form_is_not_a_systemic_azole(terminology: Terminology) -> None:
    request = order(medicationReference={"reference": "#gel"}, contained=[
        {"resourceType": "Medication", "id": "gel", "code": {"text": "Miconazole 20 mg/g"},
         "form": {"text": "Oral gel"}}])
    assert not terminology.matches_medication(AZOLES, request)


def test_oral_fluconazole_is_not_excluded_by_the_topical_route_words(terminology: Terminology) -> None:
    assert terminology.matches_medication(AZOLES, order({"text": "Fluconazole 50 mg capsule"}, route="Oral"))
    assert terminology.matches_medication(AZOLES, order({"text": "Fluconazole"}, route="Subcutaneous"))


def test_topical_ketoconazole_code_vetoes_the_name_match(terminology: Terminology) -> None:
    assert not terminology.contains(AZOLES, coded(ATC, "D01AC08", "Ketoconazole 2% shampoo"))


def test_caspofungin_an_echinocandin_is_not_an_azole(terminology: Terminology) -> None:
    assert not terminology.matches_medication(AZOLES, order(coded(ATC, "J02AX04", "Caspofungin 50 mg")))


def test_amphotericin_is_not_an_azole(terminology: Terminology) -> None:
    assert not terminology.matches_medication(AZOLES, order(coded(ATC, "J02AA01", "Liposomal amphotericin B")))


def test_an_administration_route_is_read_from_dosage_route(terminology: Terminology) -> None:
    given = {"resourceType": "MedicationAdministration", "medicationCodeableConcept": {"text": "miconazole"},
             "dosage": {"route": {"coding": [{"display": "Vaginal route"}]}}}
    assert not terminology.matches_medication(AZOLES, given)


# --------------------------------------------------------------------------- TKIs, SACT


def test_dasatinib_is_a_second_generation_tki_and_imatinib_is_not(terminology: Terminology) -> None:
    second = VS + "BcrAblTkiSecondGeneration"
    assert terminology.matches_medication(second, order(coded(ATC, "L01EA02")))
    assert terminology.matches_medication(second, order(coded(RXNORM, "475342")))
    assert terminology.matches_medication(second, order({"text": "Dasatinib 20 mg tablets"}))
    assert not terminology.matches_medication(second, order(coded(ATC, "L01EA01", "Imatinib 100 mg")))
    assert terminology.matches_medication(VS + "BcrAblTkiFirstGeneration", order(coded(ATC, "L01XE01")))


def test_second_or_third_generation_includes_ponatinib_by_name_but_not_asciminib(terminology: Terminology) -> None:
    both = VS + "BcrAblTkiSecondOrThirdGeneration"
    assert terminology.matches_medication(both, order({"text": "Ponatinib 15 mg"}))
    assert terminology.matches_medication(both, order(coded(ATC, "L01XE08")))
    assert not terminology.matches_medication(both, order({"text": "Asciminib 40 mg"}))


def test_other_sact_agents_include_chemotherapy_by_name_and_tkis_but_never_inotuzumab(terminology: Terminology) -> None:
    other = VS + "OtherSactAgents"
    assert terminology.matches_medication(other, order({"text": "Vincristine 1.5 mg/m2 IV"}))
    assert terminology.matches_medication(other, order({"text": "6-Mercaptopurine 50 mg"}))
    assert terminology.matches_medication(other, order({"text": "Asciminib"}))
    assert terminology.matches_medication(other, order(coded(ATC, "L01FX07")))
    assert not terminology.matches_medication(other, order(coded(ATC, "L01FB01", "Inotuzumab ozogamicin")))


def test_inotuzumab_matches_by_code_and_by_brand_name(terminology: Terminology) -> None:
    ino = VS + "InotuzumabOzogamicin"
    assert terminology.matches_medication(ino, order(coded(ATC, "L01XC26")))
    assert terminology.matches_medication(ino, order({"text": "BESPONSA 1 mg powder"}))


def test_dexamethasone_eye_drops_are_not_systemic_dexamethasone(terminology: Terminology) -> None:
    dex = VS + "Dexamethasone"
    assert terminology.matches_medication(dex, order({"text": "Dexamethasone 12 mg"}, route="Intravenous"))
    assert not terminology.contains(dex, coded(ATC, "S01BA01", "Dexamethasone 0.1% eye drops"))
    assert not terminology.matches_medication(dex, order({"text": "Dexamethasone"}, route="Ophthalmic route"))


def test_whole_word_names_keep_desloratadine_out_of_loratadine(terminology: Terminology) -> None:
    assert not terminology.contains(VS + "Loratadine", {"text": "Desloratadine 5 mg"})
    assert terminology.contains(VS + "Paracetamol", {"text": "Acetaminophen 500 mg"})


# --------------------------------------------------------------------------- medication references


def test_a_contained_medication_is_resolved_through_medication_reference(terminology: Terminology) -> None:
    request = order(medicationReference={"reference": "#med1"},
                    contained=[{"resourceType": "Medication", "id": "med1", "code": coded(ATC, "J02AC03")}])
    assert terminology.matches_medication(AZOLES, request)


def test_a_medication_in_the_record_is_resolved_through_medication_reference(terminology: Terminology) -> None:
    medication = {"resourceType": "Medication", "id": "posa", "code": {"text": "Posaconazole 300 mg"}}
    record = PatientRecord(patient=None, resources={"Medication": (medication,)})
    request = order(medicationReference={"reference": "Medication/posa"})
    assert terminology.matches_medication(AZOLES, request, record)
    assert not terminology.matches_medication(AZOLES, request)  # no record: unresolvable


def test_a_medication_ingredient_counts(terminology: Terminology) -> None:
    medication = {"resourceType": "Medication", "code": {"text": "Local product 123"},
                  "ingredient": [{"itemCodeableConcept": coded(ATC, "J02AC02")}]}
    assert terminology.matches_medication(AZOLES, medication)


def test_a_resource_without_a_medication_matches_nothing(terminology: Terminology) -> None:
    assert not terminology.matches_medication(AZOLES, order())
    assert not terminology.contains(AZOLES, None)


# --------------------------------------------------------------------------- observations, conditions


def test_loinc_14631_6_is_a_total_bilirubin(terminology: Terminology) -> None:
    assert terminology.contains(VS + "TotalBilirubin", coded(LOINC, "14631-6"))
    assert terminology.contains(VS + "SactLaboratoryTests", coded(LOINC, "14631-6"))
    assert not terminology.contains(VS + "Alt", coded(LOINC, "14631-6"))


def test_lab_valuesets_do_not_match_by_name(terminology: Terminology) -> None:
    assert not terminology.contains(VS + "TotalBilirubin", {"text": "Bilirubin, total"})


def test_b_cell_all_matches_by_snomed_and_lineage_name_but_plain_all_does_not(terminology: Terminology) -> None:
    ball = VS + "BCellAcuteLymphoblasticLeukaemia"
    assert terminology.contains(ball, coded(SNOMED, "277571004"))
    assert terminology.contains(ball, {"text": "Relapsed B-cell precursor acute lymphoblastic leukaemia"})
    assert not terminology.contains(ball, {"text": "T-cell acute lymphoblastic leukaemia"})
    assert not terminology.contains(ball, coded("http://hl7.org/fhir/sid/icd-10-cm", "C91.00"))


def test_vod_matches_by_name_only(terminology: Terminology) -> None:
    vod = VS + "HepaticVenoOcclusiveDisease"
    assert terminology.contains(vod, {"text": "Hepatic veno-occlusive disease"})
    assert terminology.contains(vod, {"coding": [{"display": "VOD/SOS after HSCT"}]})
    assert not terminology.contains(vod, {"text": "Episode of osmosis"})
    assert terminology.codes(vod) == []


def test_gilbert_matches_the_possessive_form(terminology: Terminology) -> None:
    assert terminology.contains(VS + "GilbertSyndromeOrHaemolysis", {"text": "Gilbert's syndrome"})


# --------------------------------------------------------------------------- API


def test_an_unknown_valueset_raises_unknown_artifact(terminology: Terminology) -> None:
    with pytest.raises(UnknownArtifact):
        terminology.contains(VS + "NoSuchValueSet", coded(LOINC, "1975-2"))
    with pytest.raises(UnknownArtifact):
        terminology.matches_medication(VS + "NoSuchValueSet", order())


def test_a_pinned_url_is_accepted_only_with_our_version(terminology: Terminology) -> None:
    assert terminology.contains(AZOLES + "|" + KNOWLEDGE_VERSION, coded(ATC, "J02AC01"))
    with pytest.raises(UnknownArtifact):
        terminology.contains(AZOLES + "|9.9.9", coded(ATC, "J02AC01"))


def test_codes_lists_enumerated_codes_of_nested_valuesets(terminology: Terminology) -> None:
    codes = terminology.codes(VS + "BcrAblTkiSecondOrThirdGeneration")
    assert (ATC, "L01EA05") in codes and (RXNORM, "662281") in codes
    assert (ATC, "L01EA01") not in codes


def test_names_lists_own_and_nested_names(terminology: Terminology) -> None:
    names = terminology.names(VS + "OtherSactAgents")
    assert "vincristine" in names and "ponatinib" in names and "inotuzumab" not in names


def test_nested_valueset_cycles_are_cut_not_followed_forever() -> None:
    def vs(name: str, other: str, code: str) -> dict[str, Any]:
        return {"resourceType": "ValueSet", "url": VS + name, "version": "0.2.0", "compose": {"include": [
            {"system": LOINC, "concept": [{"code": code}]}, {"valueSet": [VS + other]}]}}

    terminology = Terminology.from_resources([vs("A", "B", "1-1"), vs("B", "A", "2-2")])
    assert terminology.contains(VS + "A", coded(LOINC, "2-2"))
    assert terminology.contains(VS + "B", coded(LOINC, "1-1"))


def test_an_include_of_a_valueset_that_is_not_loaded_is_refused() -> None:
    broken = {"resourceType": "ValueSet", "url": VS + "X", "compose": {"include": [{"valueSet": [VS + "Missing"]}]}}
    with pytest.raises(UnknownArtifact):
        Terminology.from_resources([broken])


def test_an_is_a_filter_on_a_system_without_a_known_hierarchy_is_refused() -> None:
    snomed_isa = {"resourceType": "ValueSet", "url": VS + "X", "compose": {"include": [
        {"system": SNOMED, "filter": [{"property": "concept", "op": "is-a", "value": "277571004"}]}]}}
    with pytest.raises(ArtifactInvalid):
        Terminology.from_resources([snomed_isa])


def test_is_a_on_one_of_our_code_systems_follows_its_nesting() -> None:
    codesystem = {"resourceType": "CodeSystem", "url": "https://sact-cds.org/fhir/CodeSystem/x", "concept": [
        {"code": "parent", "concept": [{"code": "child"}]}, {"code": "other"}]}
    valueset = {"resourceType": "ValueSet", "url": VS + "X", "compose": {"include": [
        {"system": "https://sact-cds.org/fhir/CodeSystem/x",
         "filter": [{"property": "concept", "op": "is-a", "value": "parent"}]}]}}
    terminology = Terminology.from_resources([codesystem, valueset])
    assert terminology.contains(VS + "X", {"system": "https://sact-cds.org/fhir/CodeSystem/x", "code": "child"})
    assert not terminology.contains(VS + "X", {"system": "https://sact-cds.org/fhir/CodeSystem/x", "code": "other"})


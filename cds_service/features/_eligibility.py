"""The 15 criteria of NHS England CDF form INO2 (v1.361), each met, unmet or unknown.

One criterion code per bullet of the form (``knowledge.terms.CRITERION_CODES``). Six are
read from the record first: ``child``, ``rr-cd22-bcp-all``, ``ph-status-tki``,
``prior-intensive-chemo``, ``performance-status``, ``monotherapy``. The rest are
attestations: the item with the criterion code as ``linkId`` in the latest completed INO2
QuestionnaireResponse. Precedence, from safest down:

1. what the record shows (e.g. "aged 18", "ECOG 3", "only imatinib") decides;
2. where the record leaves a *policy* question (Lansky 50-60, asciminib alone), the
   criterion stays unknown and the reason says so, whatever the form says;
3. where the record holds nothing that decides, the form's answer decides (true -> met,
   false -> unmet);
4. otherwise unknown, with what to document. Nothing is ever met by default.

Whether the form can settle a criterion follows from the same precedence, not from a list:
a criterion is ``form_can_settle`` when it is unknown, the latest completed form leaves it
unanswered, and a yes or a no there would make it met or unmet (worked out by deciding it
again with each answer). Steps 1 and 2 never can (a policy question, an implausible birth
date: the record or a site policy decides whatever the form says); step 3 always can; the
B-ALL criterion can while no answer is given (a "no" makes it unmet). The eligibility card
offers its link to the form, and points to the form, only when some criterion can.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from cds_service.features import _valuesets as vs
from cds_service.features._body import patient_age
from cds_service.features._conflicts import other_sact
from cds_service.features._medications import history, medication_date
from cds_service.features._performance import performance_status
from cds_service.features._read import concept_text, in_valueset, is_asserted, medication_name
from cds_service.features._registry import Evidence, FeatureContext, FeatureValue, feature
from cds_service.features._response import answers, form_date, latest_ino2_response
from cds_service.knowledge.terms import CRITERION_CODES
from cds_service.record import PatientRecord, reference_of

#: (status, reason, final): ``final`` False lets the INO2 form decide instead.
Finding = tuple[str, str, bool]

#: What each attestation-only criterion asks (INO2 bullet, paraphrased for the card).
ATTESTED = {
    "application-consultant": "application made by, and first cycle prescribed by, a consultant accredited in SACT",
    "vod-risk-awareness": "prescriber aware of the hepatotoxicity/VOD risk factors, rising with the number of cycles",
    "puberty-dosing": "post-pubescent, or pre-pubescent and dosed as in Pediatr Blood Cancer 2014;61:369-372 "
                      "(that dose is not encoded: the paper was not verified)",
    "principal-treatment-centre": "requested by and given in a principal treatment centre",
    "mdt-discussion": "discussed at an MDT with two subspecialty consultants, one a paediatrician",
    "treatment-duration-policy": "the INO2 treatment-duration policy will apply",
    "no-planned-break": "no planned treatment breaks of more than 6 weeks beyond the expected cycle length",
    "unlicensed-policy": "Trust policy on unlicensed treatments followed",
    "spc-use": "otherwise used as set out in the SPC",
}


#: Each criterion as a card names it: the display of CodeSystem ino2-criterion (a test
#: keeps the two equal), so a card never shows a criterion code.
DISPLAYS = {
    "application-consultant": "Application by an accredited consultant",
    "vod-risk-awareness": "Prescriber aware of VOD/SOS risk",
    "rr-cd22-bcp-all": "Relapsed/refractory CD22-positive B-cell precursor ALL",
    "ph-status-tki": "Ph-negative, or Ph-positive after a failed 2nd/3rd-generation TKI",
    "prior-intensive-chemo": "Prior intensive combination chemotherapy",
    "child": "The patient is a child",
    "puberty-dosing": "Post-pubescent, or pre-pubescent with the trial dosage",
    "principal-treatment-centre": "Requested and given in a principal treatment centre",
    "mdt-discussion": "Discussed at a paediatric MDT",
    "performance-status": "Performance status 0-2",
    "treatment-duration-policy": "Treatment duration policy applies",
    "monotherapy": "Used as monotherapy",
    "no-planned-break": "No planned break over 6 weeks beyond the cycle length",
    "unlicensed-policy": "Trust unlicensed-medicines policy followed",
    "spc-use": "Otherwise used as in the SPC",
}


def _child(record: PatientRecord, ctx: FeatureContext, ev: list[Evidence]) -> Finding | None:
    age = patient_age(record, ctx)
    ev.extend(age.evidence)
    limit = ctx.policy.child_age_limit_years
    if age.status != "met":
        if (age.value or {}).get("implausible"):  # never "met" on an attestation alone
            return ("unknown", f"The date of birth {age.value['birth_date']} is implausible "
                               f"({age.value['implausible']}): correct it in the record.", True)
        return None
    years = age.value["years"]
    if years >= limit:
        return ("unmet", f"Aged {years}: INO2 is the form for children (site limit: under {limit}); "
                         "for adults use the separate form INO1.", True)
    return ("met", f"Aged {years} (site limit: under {limit}).", True)


def _b_all(record: PatientRecord, ctx: FeatureContext, ev: list[Evidence], attested: Any) -> Finding | None:
    return _b_all_given(_b_all_recorded(record, ctx, ev), attested)


def _b_all_recorded(record: PatientRecord, ctx: FeatureContext, ev: list[Evidence]) -> bool:
    """Is a B-cell ALL diagnosis recorded (the first one becomes evidence)?"""
    found = [
        c for c in record.of_type("Condition")
        if is_asserted(c) and in_valueset(record, ctx, vs.B_ALL, c.get("code"))
    ]
    ev.extend(Evidence(f"Diagnosis: {concept_text(c.get('code'))}", reference_of(c)) for c in found[:1])
    return bool(found)


def _b_all_given(found: bool, attested: Any) -> Finding | None:
    """The B-ALL finding given whether a diagnosis is recorded and the form's answer: the
    only record criterion whose reading depends on the answer."""
    if attested is True and not found:
        return ("unknown", "Attested on the INO2 form, but no B-cell ALL diagnosis is recorded: record the "
                           "diagnosis.", True)
    if attested is None:
        have = "B-cell ALL is recorded" if found else "no B-cell ALL diagnosis is recorded"
        return ("unknown", f"{have.capitalize()}; relapsed/refractory status and CD22 positivity are not coded: "
                           "confirm on the INO2 form.", True)
    return None


def _ph_tki(record: PatientRecord, ctx: FeatureContext, ev: list[Evidence]) -> Finding | None:
    given = {gen: history(record, ctx, url) for gen, url in vs.TKI_GENERATIONS.items()}
    kinds = {"first": "first generation", "second": "second generation", "third": "third generation",
             "asciminib": "asciminib, STAMP inhibitor"}
    for gen, found in given.items():
        ev.extend(Evidence(f"TKI ({kinds[gen]}): {medication_name(r, record)} "
                           f"{(medication_date(r) or '')}".rstrip(), reference_of(r)) for r in found[:1])

    def names(*gens: str) -> str:
        return ", ".join(sorted({medication_name(r, record) for gen in gens for r in given[gen]}))

    if given["second"] or given["third"]:
        return ("met", f"Second/third-generation TKI recorded ({names('second', 'third')}); "
                       "relapsed/refractory disease on it is taken as its failure.", True)
    if given["asciminib"]:
        choice = ctx.policy.asciminib_counts_for_ino2
        if choice == "yes":
            return ("met", f"Asciminib recorded ({names('asciminib')}); site policy counts it as a second/third-"
                           "generation TKI.", True)
        if choice == "no":
            return ("unmet", "Only asciminib beyond first-generation TKIs is recorded; site policy does not count "
                             "it as a second/third-generation TKI.", True)
        return ("unknown", "Only asciminib is recorded beyond first-generation TKIs: whether it counts as a "
                           "'second or third generation TKI' is a policy decision (not defined by INO2).", True)
    if given["first"]:
        return ("unmet", f"Only a first-generation TKI is recorded ({names('first')}): Philadelphia-positive ALL "
                         "needs a failed second or third generation TKI.", True)
    return None  # Ph-negative, or TKI history not in the record: the form decides


def _prior_chemo(record: PatientRecord, ctx: FeatureContext, ev: list[Evidence]) -> Finding | None:
    prior = history(record, ctx, vs.OTHER_SACT)
    agents = sorted({medication_name(r, record) for r in prior})
    if agents:
        ev.append(Evidence(f"Earlier anti-cancer agents recorded: {', '.join(agents)}"))
    return None  # intensity of the initial chemotherapy is not readable from the record


def _performance(record: PatientRecord, ctx: FeatureContext, ev: list[Evidence]) -> Finding | None:
    ps = performance_status(record, ctx)
    ev.extend(ps.evidence)
    if ps.status == "unknown" and ps.attestation_may_decide:
        return None
    return (ps.status, ps.reason, True)


def _monotherapy(record: PatientRecord, ctx: FeatureContext, ev: list[Evidence]) -> Finding | None:
    other = other_sact(record, ctx)
    if other.status == "met":
        ev.extend(other.evidence)
        return ("unmet", "Another anti-cancer agent is drafted or active with inotuzumab: see the monotherapy card.", True)
    if other.status == "not_met" and other.value is not None:
        return ("met", "No other anti-cancer agent is drafted or active.", True)
    return None


_FROM_RECORD: dict[str, Callable[..., Finding | None]] = {
    "child": _child,
    "ph-status-tki": _ph_tki,
    "prior-intensive-chemo": _prior_chemo,
    "performance-status": _performance,
    "monotherapy": _monotherapy,
}


def _same(finding: Finding | None, _attested: Any) -> Finding | None:
    """A record finding that does not depend on the form's answer."""
    return finding


def _decide(code: str, finding: Finding | None, attested: Any, when: str | None, have_form: bool) -> tuple[str, str]:
    """(status, reason) of one criterion from the record's finding and the form's answer,
    by the precedence of the module docstring."""
    if finding is not None and finding[0] != "met" and attested is True and finding[2]:
        finding = (finding[0], finding[1] + f" The record and the INO2 form of {when} disagree: the form "
                   "attests this criterion; the record was used.", True)
    if finding is not None and finding[0] == "met" and attested is False:
        finding = ("unmet", finding[1] + f" The record and the INO2 form of {when} disagree: the form records "
                   "it as not met; the form was used.", True)
    if finding is None:
        finding = _from_form(code, attested, when, have_form)
    return finding[0], finding[1]


def _from_form(code: str, attested: Any, when: str | None, have_form: bool) -> Finding:
    what = ATTESTED.get(code, "")
    what = f" ({what})" if what else ""
    if attested is True:
        return ("met", f"Attested on the INO2 form of {when}.", True)
    if attested is False:
        return ("unmet", f"Recorded as not met on the INO2 form of {when}{what}.", True)
    if have_form:
        return ("unknown", f"Not answered on the INO2 form of {when}{what}.", True)
    return ("unknown", f"No completed INO2 form{what}.", True)


@feature("ino2_criteria")
def ino2_criteria(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Each INO2 criterion as {code, display, status: met|unmet|unknown, reason, form_can_settle}.

    Source: NHS England CDF form INO2 (v1.361), one criterion per bullet; precedence in
    the module docstring. Value: ``criteria`` (all 15, form order; ``form_can_settle``: a
    yes or no on the INO2 form, which leaves it unanswered, would make this unknown
    criterion met or unmet: the card's link to the form is offered on it), ``open`` =
    [{code, status}] of those unmet or unknown (the card's ``org.sact-cds.criteria``
    extension), ``unmet_count``, ``unknown_count``, ``form_date``.
    """
    qr = latest_ino2_response(record)
    given = answers(qr)
    when = form_date(qr)
    evidence: list[Evidence] = []
    if qr is not None:
        evidence.append(Evidence(f"INO2 form completed {when}", reference_of(qr), when))
    criteria = []
    for code in CRITERION_CODES:
        attested = given.get(code) if isinstance(given.get(code), bool) else None
        reading: Callable[[Any], Finding | None]
        if code == "rr-cd22-bcp-all":
            reading = functools.partial(_b_all_given, _b_all_recorded(record, ctx, evidence))
        else:
            fixed = _FROM_RECORD[code](record, ctx, evidence) if code in _FROM_RECORD else None
            reading = functools.partial(_same, fixed)
        status, reason = _decide(code, reading(attested), attested, when, qr is not None)
        # what a yes or a no on the form would make of it, where the form gives no answer
        can_settle = status == "unknown" and attested is None and any(
            _decide(code, reading(answer), answer, when, True)[0] != "unknown" for answer in (True, False))
        criteria.append({"code": code, "display": DISPLAYS.get(code, code), "status": status, "reason": reason,
                         "form_can_settle": can_settle})
    open_ = [{"code": c["code"], "status": c["status"]} for c in criteria if c["status"] != "met"]
    value = {
        "criteria": criteria,
        "open": open_,
        "unmet_count": sum(c["status"] == "unmet" for c in criteria),
        "unknown_count": sum(c["status"] == "unknown" for c in criteria),
        "form_date": when,
    }
    return FeatureValue("met" if not open_ else "not_met", value, tuple(evidence))

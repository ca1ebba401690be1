"""Server-rendered HTML of the INO2 form app: the form, the print view, messages.

Rendered from the Questionnaire (every item, in its order, with its source statement) and
the pre-fill (``populate.Fill``): a pre-filled answer is marked "From the record" with the
finding and each datum behind it; an item the record cannot answer shows why. Plain HTML
(fieldset/legend, labelled radios, one landmark, ``lang``), no script, no build step. Every
value that comes from the record is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from cds_service.apps.ino2.populate import Fill, evidence_line

CSS = """
body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f6f6}
main{max-width:60rem;margin:0 auto;padding:1rem 1.5rem;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0 .6rem}
.patient{border-bottom:2px solid #444;padding-bottom:.5rem;margin-bottom:1rem}
fieldset{border:1px solid #bbb;border-radius:4px;margin:0 0 .8rem;padding:.6rem .9rem}
fieldset.prefilled{border-left:6px solid #1d70b8;background:#f3f8fc}
fieldset.open{border-left:6px solid #d4351c}
legend{font-weight:600;padding:0 .3rem}
.badge{display:inline-block;font-size:.8rem;font-weight:700;padding:.05rem .45rem;border-radius:3px;
margin-left:.4rem;vertical-align:middle}
.badge.record{background:#1d70b8;color:#fff}.badge.todo{background:#d4351c;color:#fff}
.quote{color:#505a5f;font-size:.9rem;margin:.2rem 0}
.evidence{font-size:.92rem;margin:.3rem 0 .4rem 1.1rem;padding:0}
.hint{font-size:.92rem;color:#505a5f;margin:.3rem 0}
.choices label{margin-right:1.2rem;white-space:nowrap}
.sign{border:2px solid #1b1b1b;padding:.8rem;margin:1rem 0}
button{font-size:1rem;padding:.5rem 1.2rem;background:#00703c;color:#fff;border:0;border-radius:3px}
.error{border:3px solid #d4351c;padding:.6rem;margin:.6rem 0}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #999;padding:.35rem .5rem;
vertical-align:top;text-align:left}
@media print{body{background:#fff}main{padding:0}.noprint{display:none}}
"""


def page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def message(title: str, text: str) -> str:
    return page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")


def patient_banner(patient: Mapping[str, Any] | None) -> str:
    if not patient:
        return ""
    name = _name(patient)
    born = patient.get("birthDate") or "not recorded"
    ids = ", ".join(str(i.get("value")) for i in patient.get("identifier") or () if isinstance(i, dict) and i.get("value"))
    extra = f" &middot; Identifier {escape(ids)}" if ids else ""
    return (f"<p class=\"patient\"><strong>{escape(name)}</strong> &middot; born {escape(str(born))}"
            f"{extra}</p>")


def person_name(person: Mapping[str, Any]) -> str | None:
    """A Practitioner's (or Patient's) name as written ("Dr Adaeze Okafor"); None if it has none."""
    for n in person.get("name") or ():
        if isinstance(n, dict):
            if n.get("text"):
                return str(n["text"])
            words = [*(n.get("prefix") or ()), *(n.get("given") or ()), n.get("family") or ""]
            text = " ".join(str(w) for w in words if w).strip()
            if text:
                return text
    return None


def _name(patient: Mapping[str, Any]) -> str:
    for n in patient.get("name") or ():
        if isinstance(n, dict):
            if n.get("text"):
                return str(n["text"])
            given = " ".join(str(g) for g in n.get("given") or ())
            return f"{given} {n.get('family') or ''}".strip() or "Name not recorded"
    return "Name not recorded"


def _quotes(item: Mapping[str, Any]) -> str:
    out = []
    for ext in item.get("extension") or ():
        for part in ext.get("extension") or ():
            if part.get("url") == "quote":
                out.append(f"<p class=\"quote\">INO2: &ldquo;{escape(str(part.get('valueString')))}&rdquo;</p>")
    return "".join(out)


def _evidence(fill: Fill) -> str:
    lines = [f"<li>{escape(fill.reason)}</li>"] + [f"<li>{escape(evidence_line(e))}</li>" for e in fill.evidence]
    return "<ul class=\"evidence\">" + "".join(lines) + "</ul>"


def _hint(fill: Fill | None) -> str:
    """Why an item is not pre-filled, and what the record does hold about it."""
    if fill is None:
        return ""
    seen = [f"<li>{escape(evidence_line(e))}</li>" for e in fill.evidence]
    held = f"<p class=\"hint\">In the record:</p><ul class=\"evidence\">{''.join(seen)}</ul>" if seen else ""
    return f"<p class=\"hint\">{escape(fill.reason)}</p>{held}"


def context_orders(app_context: str | None) -> list[str]:
    """The draft orders (``Type/id``) the card link's ``appContext`` names (``apps/links.py``)."""
    try:
        orders = json.loads(app_context or "").get("draftOrders") or []
    except (ValueError, AttributeError):
        return []
    return [o for o in orders if isinstance(o, str)][:10] if isinstance(orders, list) else []


def _concept_text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    return next((str(c["display"]) for c in concept.get("coding") or () if isinstance(c, dict) and c.get("display")),
                "")


def _doses(order: Mapping[str, Any]) -> list[str]:
    """The order's dose quantities as written ("0.8 mg/m²", "0.77 mg"), per-m² first."""
    out: list[str] = []
    for dosage in order.get("dosageInstruction") or ():
        for rate in (dosage.get("doseAndRate") or ()) if isinstance(dosage, dict) else ():
            dose = (rate or {}).get("doseQuantity") if isinstance(rate, dict) else None
            if not isinstance(dose, dict) or not isinstance(dose.get("value"), (int, float)):
                continue
            unit = str(dose.get("unit") or dose.get("code") or "").replace("{", "").replace("}", "")
            unit = unit.replace("/m2", "/m²").replace("/m^2", "/m²")
            if unit:
                out.append(f"{dose['value']:g} {unit}")
    return sorted(dict.fromkeys(out), key=lambda d: "/m²" not in d)


def _planned_day(order: Mapping[str, Any]) -> str:
    for dosage in order.get("dosageInstruction") or ():
        timing = (dosage or {}).get("timing") or {} if isinstance(dosage, dict) else {}
        events = timing.get("event") or ()
        if events and isinstance(events[0], str):
            return events[0][:10]
        start = ((timing.get("repeat") or {}).get("boundsPeriod") or {}).get("start")
        if isinstance(start, str):
            return start[:10]
    return str(order.get("authoredOn") or "")[:10]


def order_text(order: Mapping[str, Any]) -> str:
    """What a draft medication order is, in words: the medicine's name, the dose and the day
    it is for ("inotuzumab ozogamicin 0.8 mg/m² (0.77 mg), 2026-12-02"); "" when the order
    names no medicine in words (a code alone is not shown)."""
    name = _concept_text(order.get("medicationCodeableConcept"))
    if not name:
        name = str((order.get("medicationReference") or {}).get("display") or "")
    if not name:
        return ""
    doses = _doses(order)
    if doses:
        name += " " + doses[0] + "".join(f" ({d})" for d in doses[1:2])
    day = _planned_day(order)
    return f"{name}, {day}" if day else name


def _opened_for(orders: list[str] | None) -> str:
    """The draft orders the form was opened from, as a sentence (names, never ids)."""
    if orders is None:
        return ""
    named = [o for o in orders if o]
    unknown = len(orders) - len(named)
    if unknown == 1:
        named.append("the inotuzumab order being checked")
    elif unknown > 1:
        named.append(f"the {unknown} inotuzumab orders being checked")
    if not named:
        return "Opened from the order check."
    return f"Opened from the order check of {'; '.join(named)}."


def _option_label(option: Mapping[str, Any]) -> str:
    coding = option.get("valueCoding") or {}
    return str(coding.get("display") or "Option without a name (tell the form's owners)")


def _choices(item: Mapping[str, Any], chosen: Any, hint_id: str) -> str:
    link = escape(item["linkId"])
    if item.get("type") == "choice":
        options = [(str((o.get("valueCoding") or {}).get("code")), _option_label(o))
                   for o in item.get("answerOption") or ()]
    else:
        options = [("true", "Yes, met"), ("false", "No, not met")]
    options.append(("", "Not answered"))
    chosen_text = "" if chosen is None else ("true" if chosen is True else "false" if chosen is False else str(chosen))
    out = []
    for n, (value, label) in enumerate(options):
        rid = f"{link}-{n}"
        checked = " checked" if value == chosen_text else ""
        out.append(f"<label for=\"{rid}\"><input type=\"radio\" id=\"{rid}\" name=\"{link}\" "
                   f"value=\"{escape(value)}\" aria-describedby=\"{hint_id}\"{checked}> {escape(label)}</label>")
    return "<div class=\"choices\">" + "".join(out) + "</div>"


def form_page(
    questionnaire: Mapping[str, Any],
    fills: Mapping[str, Fill],
    *,
    patient: Mapping[str, Any] | None,
    user: str | None,
    csrf: str,
    action: str,
    values: Mapping[str, Any] | None = None,
    error: str | None = None,
    orders: list[str] | None = None,
    form_token: str = "",
) -> str:
    """The form: every item, pre-filled answers marked with their evidence."""
    title = str(questionnaire.get("title") or "INO2 form")
    parts = [f"<h1>{escape(title)}</h1>", patient_banner(patient)]
    filled = sum(1 for f in fills.values() if f.answer is not None)
    parts.append(f"<p>{filled} of {len(questionnaire.get('item') or ())} items are pre-filled from the record "
                 "(marked <span class=\"badge record\">From the record</span>, with the data behind them). "
                 "Check them, answer the rest, then sign. Nothing is saved until you sign.</p>")
    if _opened_for(orders):
        parts.append(f"<p class=\"hint\">{escape(_opened_for(orders))}</p>")
    if error:
        parts.append(f"<div class=\"error\" role=\"alert\"><strong>Not saved:</strong> {escape(error)}</div>")
    parts.append(f"<form method=\"post\" action=\"{escape(action)}\">")
    parts.append(f"<input type=\"hidden\" name=\"csrf\" value=\"{escape(csrf)}\">"
                 f"<input type=\"hidden\" name=\"form\" value=\"{escape(form_token)}\">")
    for item in questionnaire.get("item") or ():
        link = item["linkId"]
        fill = fills.get(link)
        chosen = (values or {}).get(link, fill.answer if fill else None)
        hint_id = f"{escape(link)}-hint"
        prefilled = fill is not None and fill.answer is not None
        badge = ("<span class=\"badge record\">From the record</span>" if prefilled
                 else "<span class=\"badge todo\">To answer</span>")
        css = "prefilled" if prefilled else "open"
        hint = _evidence(fill) if prefilled and fill else _hint(fill)
        parts.append(
            f"<fieldset class=\"{css}\" id=\"item-{escape(link)}\"><legend>{escape(str(item.get('text') or link))}"
            f"{badge}</legend>{_quotes(item)}<div id=\"{hint_id}\">{hint}</div>"
            f"{_choices(item, chosen, hint_id)}</fieldset>"
        )
    who = escape(user) if user else "the clinician signed in to the EHR"
    parts.append(
        "<div class=\"sign\"><label for=\"sign\"><input type=\"checkbox\" id=\"sign\" name=\"sign\" value=\"yes\" "
        f"required> I, {who}, confirm these answers for the NHS England CDF form INO2.</label></div>"
        "<button type=\"submit\">Sign and save</button></form>"
    )
    return page(title, "".join(parts))


def _answer_text(item: Mapping[str, Any] | None, question: Mapping[str, Any]) -> str:
    for answer in (item or {}).get("answer") or ():
        if "valueBoolean" in answer:
            return "Yes, met" if answer["valueBoolean"] else "No, not met"
        if "valueCoding" in answer:
            code = answer["valueCoding"].get("code")
            listed = next((_option_label(o) for o in question.get("answerOption") or ()
                           if (o.get("valueCoding") or {}).get("code") == code), None)
            return str(answer["valueCoding"].get("display") or listed or "An answer without a name")
    return "Not answered"


def _answer_evidence(item: Mapping[str, Any] | None) -> str:
    """The evidence lines kept with an answer (their record references stay in the saved
    response, for systems; a person reads the lines)."""
    lines = []
    for answer in (item or {}).get("answer") or ():
        for ext in answer.get("extension") or ():
            line = next((p.get("valueString") for p in ext.get("extension") or () if p.get("url") == "line"), None)
            if line:
                lines.append(f"<li>{escape(str(line))}</li>")
    if lines:
        return "<ul class=\"evidence\">" + "".join(lines) + "</ul>"
    return "Attested by the signing clinician" if (item or {}).get("answer") else ""


def _when(instant: Any) -> str:
    """``2026-12-02T10:15:00Z`` as "2026-12-02 at 10:15 UTC" (as given if it is not an instant)."""
    text = str(instant or "")
    if len(text) >= 16 and text[10] == "T":
        zone = " UTC" if text.endswith(("Z", "+00:00")) else ""
        return f"{text[:10]} at {text[11:16]}{zone}"
    return text or "an unrecorded time"


def print_page(questionnaire: Mapping[str, Any], response: Mapping[str, Any], *, patient: Mapping[str, Any] | None,
               signer: str | None = None, form_url: str = "") -> str:
    """The signed form for the funding application: each criterion, the answer, the evidence."""
    title = f"{questionnaire.get('title') or 'INO2 form'}: signed answers"
    answered = {i.get("linkId"): i for i in response.get("item") or ()}
    rows = []
    for item in questionnaire.get("item") or ():
        got = answered.get(item["linkId"])
        rows.append(f"<tr><th scope=\"row\">{escape(str(item.get('text') or item['linkId']))}</th>"
                    f"<td>{escape(_answer_text(got, item))}</td><td>{_answer_evidence(got)}</td></tr>")
    who = signer or "the clinician signed in to the EHR"
    version = str(response.get("questionnaire") or "").partition("|")[2]
    form = f"version {version} of the form" if version else "the form"
    amended = " (amended)" if response.get("status") == "amended" else ""
    back = f"<p class=\"noprint\"><a href=\"{escape(form_url)}\">Back to the form</a></p>" if form_url else ""
    body = (
        f"<h1>{escape(title)}</h1>{patient_banner(patient)}"
        f"<p>Signed by {escape(who)} on {escape(_when(response.get('authored')))}{amended}; saved to the patient's "
        f"record in the EHR ({escape(form)}).</p>"
        "<table><thead><tr><th scope=\"col\">INO2 criterion</th><th scope=\"col\">Answer</th>"
        "<th scope=\"col\">Evidence</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>" + back
    )
    return page(title, body)

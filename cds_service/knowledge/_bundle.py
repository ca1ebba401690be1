"""The knowledge package as one FHIR transaction Bundle, for an integration team to POST.

``PUT <Type>/<id>`` (update-as-create) rather than ``POST`` makes loading idempotent: posting the
same Bundle twice leaves one copy of each artifact, and the server keeps our ids, so the
canonical ``https://sact-cds.org/fhir/<Type>/<id>`` and the server's ``<Type>/<id>`` agree.
``fullUrl`` is that ``<base>/<Type>/<id>`` (the instance the entry PUTs, which ``validate``
requires to equal the artifact's canonical ``url``).
Entries are sorted by type then id so the file diffs cleanly between releases; nothing in it
depends on the clock, so the same knowledge always gives the same bytes.
"""

from __future__ import annotations

import copy
from typing import Any

from cds_service.knowledge import terms
from cds_service.knowledge._base import KnowledgeBase


def transaction_bundle(kb: KnowledgeBase) -> dict[str, Any]:
    """A ``transaction`` Bundle with one ``PUT <Type>/<id>`` entry per artifact."""
    entries = []
    for resource in sorted(kb.resources.values(), key=lambda r: (r["resourceType"], r["id"])):
        rtype, rid = resource["resourceType"], resource["id"]
        entries.append({
            "fullUrl": f"{terms.CANONICAL_BASE}/{rtype}/{rid}",
            "resource": copy.deepcopy(resource),
            "request": {"method": "PUT", "url": f"{rtype}/{rid}"},
        })
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

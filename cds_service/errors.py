"""The exceptions sact-cds raises, and where each one ends up.

    SactCdsError
    ├── KnowledgeError               bad knowledge: `validate` reports it, startup refuses it
    │   ├── ArtifactInvalid          an artifact fails the R4B models or the R4 JSON schema
    │   ├── UnknownArtifact          a canonical reference resolves to nothing
    │   ├── UnknownFeature           a condition names a %features.<name> nobody computes
    │   └── ExpressionCompileError   a FHIRPath expression does not compile
    ├── HookRequestError             a client sent something we cannot serve
    │   ├── MalformedRequest         -> HTTP 400 with an OperationOutcome naming the field
    │   └── PrefetchUnavailable      -> HTTP 412: required data neither prefetched nor fetchable
    └── EvaluationError              a rule could not be evaluated -> a visible
                                     `data-unavailable` card, never silence

Each error carries where it happened (artifact canonical, action id, expression, field),
so a message can say what to fix, like jsonschema's ``path``/``schema_path``.
"""

from __future__ import annotations


class SactCdsError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        artifact: str | None = None,
        action_id: str | None = None,
        expression: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.artifact = artifact
        self.action_id = action_id
        self.expression = expression
        self.field = field

    def __str__(self) -> str:
        where = [
            f"{label} {value}"
            for label, value in (
                ("artifact", self.artifact),
                ("action", self.action_id),
                ("field", self.field),
                ("expression", self.expression),
            )
            if value
        ]
        return f"{self.message} ({'; '.join(where)})" if where else self.message


class KnowledgeError(SactCdsError):
    """The knowledge artifacts cannot be used as they are."""


class ArtifactInvalid(KnowledgeError):
    """An artifact is not valid FHIR R4 or breaks a project convention."""


class UnknownArtifact(KnowledgeError):
    """A canonical reference does not resolve to a loaded artifact."""


class UnknownFeature(KnowledgeError):
    """An expression refers to a case feature that is not registered."""


class ExpressionCompileError(KnowledgeError):
    """A FHIRPath expression in an artifact does not compile."""


class HookRequestError(SactCdsError):
    """The CDS Hooks request cannot be served as sent."""


class MalformedRequest(HookRequestError):
    """The request envelope is not valid (HTTP 400)."""


class PrefetchUnavailable(HookRequestError):
    """Required data is neither in prefetch nor obtainable from fhirServer (HTTP 412)."""

    def __init__(self, message: str, *, missing: list[str] | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.missing = list(missing or [])


class EvaluationError(SactCdsError):
    """A rule or feature failed while evaluating; becomes a `data-unavailable` card."""


__all__ = sorted(
    [
        "ArtifactInvalid",
        "EvaluationError",
        "ExpressionCompileError",
        "HookRequestError",
        "KnowledgeError",
        "MalformedRequest",
        "PrefetchUnavailable",
        "SactCdsError",
        "UnknownArtifact",
        "UnknownFeature",
    ]
)

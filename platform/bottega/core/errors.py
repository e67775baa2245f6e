"""Domain errors shared by the API (which maps them to problem+json) and the SDK (which re-raises them).

Services raise these, never HTTP errors. Each class has a stable `type` slug that travels on the wire as
`urn:bottega:problem:<slug>`, so the SDK can raise the same class the server raised.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_PREFIX = "urn:bottega:problem:"


class BottegaError(Exception):
    """Base of every domain error: an HTTP status, a stable type slug, a title and a detail for humans."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    fields: ClassVar[tuple[str, ...]] = ()
    """the typed attributes of a domain subclass, read from (and sent as) the problem's extra members"""

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.http_status: int = self.status
        """the HTTP status of the answer (the SDK sets the one the server sent)"""
        for name in self.fields:
            setattr(self, name, extra.get(name))

    @property
    def type(self) -> str:
        return PROBLEM_PREFIX + self.slug

    def to_problem(self) -> dict[str, Any]:
        return {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail, **self.extra}


class InvalidInput(BottegaError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"


class BadRequest(BottegaError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class Unauthenticated(BottegaError):
    status = 401
    slug = "unauthenticated"
    title = "Authentication required"


class Forbidden(BottegaError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class NotFound(BottegaError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(BottegaError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class PreconditionFailed(BottegaError):
    status = 412
    slug = "precondition-failed"
    title = "Precondition failed"


class PayloadTooLarge(BottegaError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


# -- domain subclasses: typed attributes, their own slug; the SDK re-raises them by slug ----------------------------


class ProjectNotFound(NotFound):
    slug = "project-not-found"
    title = "Project not found"
    fields = ("project",)
    project: str | None


class ModelNotFound(NotFound):
    """No such model, or no such version or alias of it (`version` says which was asked for)."""

    slug = "model-not-found"
    title = "Model not found"
    fields = ("project", "model", "version")
    project: str | None
    model: str | None
    version: str | None


class StaleRevision(Conflict):
    """A change based on a revision that is no longer the current one (optimistic concurrency)."""

    slug = "stale-revision"
    title = "Stale revision"
    fields = ("current_revision", "expected_revision")
    current_revision: int | None
    expected_revision: int | None


class RevisionRequired(PreconditionFailed):
    """A change that does not say which revision it is based on."""

    slug = "revision-required"
    title = "Revision required"
    fields = ("current_revision",)
    current_revision: int | None


class IntegrityFailure(BottegaError):
    """Stored bytes no longer match their recorded checksum."""

    status = 500
    slug = "integrity"
    title = "Stored data failed its integrity check"


class Unavailable(BottegaError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"


def _all_subclasses(cls: type[BottegaError]) -> list[type[BottegaError]]:
    out: list[type[BottegaError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_class_for(problem_type: str | None, status: int) -> type[BottegaError]:
    """The error class for a problem document's `type` (falling back on the status code)."""
    candidates: list[type[BottegaError]] = [BottegaError, *_all_subclasses(BottegaError)]
    if problem_type and problem_type.startswith(PROBLEM_PREFIX):
        slug = problem_type.removeprefix(PROBLEM_PREFIX)
        for cls in candidates:
            if cls.slug == slug:
                return cls
    for cls in candidates[1:]:
        if cls.status == status:
            return cls
    return BottegaError


class OperationFailed(RuntimeError):
    """Work that ran and failed for a reason its message states (a distributed training run, a tuning study with
    no completed trial): callers show the message, not a traceback."""

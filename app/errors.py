"""The one domain error hierarchy.

Services raise these; each API dialect maps them to its own envelope and status code at the
edge (`app/api/envelope.py`). Messages are written for the person who sent the request.
"""

from __future__ import annotations


class WaypointError(Exception):
    """Base of every error a request can cause; `status` is the HTTP status it maps to."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(WaypointError):
    """The request is well-formed JSON but asks for something impossible or inconsistent."""

    status = 400


class UnknownVectorName(BadRequest):
    """A vector name the collection does not have (Qdrant's wording)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Wrong input: Not existing vector name error: {name or '(unnamed)'}")


class NulCharacter(BadRequest):
    """Text holding U+0000. PostgreSQL's `text` and `jsonb` cannot store it, so no payload,
    name or setting ever contains one, and a filter on one could only ever match nothing."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"Wrong input: {where} contains the NUL character (\\u0000), "
            "which PostgreSQL cannot store"
        )


class ValidationFailed(WaypointError):
    """The request body does not have the documented shape or types."""

    status = 422


class NotFound(WaypointError):
    status = 404


class CollectionNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"Not found: Collection `{name}` doesn't exist!")
        self.name = name


class AlreadyExists(WaypointError):
    status = 409


class Unauthorized(WaypointError):
    status = 401


class Forbidden(WaypointError):
    status = 403


class TooManyRequests(WaypointError):
    status = 429


class NotReady(WaypointError):
    status = 503

"""One error hierarchy: a message for people, kept apart from the detail we log."""

from __future__ import annotations


class ConectadoError(Exception):
    """Base of every error we raise on purpose.

    ``message`` is what a person reads (what happened, where, what to do); ``detail`` is extra
    context for logs and is never sent to API clients.
    """

    status_code = 500
    title = "Internal error"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class SetupError(ConectadoError):
    """The machine or configuration is not ready (missing package, port taken, bad folder)."""

    title = "Set-up problem"


class DatabaseUnavailable(ConectadoError):
    """The database cannot be reached."""

    status_code = 503
    title = "Database unavailable"


class InvalidInput(ConectadoError):
    """Input that names a row or field and says what is wrong with it."""

    status_code = 422
    title = "Invalid input"


class NotFound(ConectadoError):
    """The thing asked for does not exist."""

    status_code = 404
    title = "Not found"


class Conflict(ConectadoError):
    """The request clashes with the current state."""

    status_code = 409
    title = "Conflict"


class Forbidden(ConectadoError):
    """The caller's role does not allow this."""

    status_code = 403
    title = "Forbidden"


class Unauthorized(ConectadoError):
    """No valid API key was given."""

    status_code = 401
    title = "Unauthorized"


class DataFileError(ConectadoError):
    """A data file is missing, unreadable or corrupt."""

    title = "Data file problem"

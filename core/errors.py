"""One error hierarchy for the whole project.

Every error a user can cause carries its HTTP status and a CLI exit code, so the REST
exception handler and the CLI render the same message the same way.
"""

from __future__ import annotations


class TracehouseError(Exception):
    """Base class: ``message`` is one line a user can act on."""

    status = 500
    exit_code = 1
    code = "internal_error"
    # Seconds after which the same request may well succeed (the service sends it as
    # Retry-After, and the upload client waits that long); None: trying again will not help.
    retry_after_s: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"ok": False, "error": self.message, "code": self.code, "status": self.status}


class BadInput(TracehouseError):
    """The input (a file, a flag, a form field) is wrong; nothing was written."""

    status = 400
    exit_code = 2
    code = "bad_input"


class BadTrace(BadInput):
    """A trace file cannot be read: truncated, not JSON, not a trace, no events."""

    status = 422
    code = "bad_trace"


class TooLarge(BadInput):
    status = 413
    code = "too_large"


class Unauthorized(TracehouseError):
    status = 401
    exit_code = 6
    code = "unauthorized"


class Forbidden(TracehouseError):
    status = 403
    exit_code = 6
    code = "forbidden"


class NotFound(TracehouseError):
    status = 404
    exit_code = 3
    code = "not_found"


class SchemaOutOfDate(TracehouseError):
    """The database was made by an older (or newer) tracehouse; names the command that fixes it."""

    status = 503
    exit_code = 4
    code = "schema_out_of_date"


class DatabaseError(TracehouseError):
    status = 503
    exit_code = 5
    code = "database_error"


class InvalidField(BadInput):
    """A request field (a file name, a metadata value, an id) is outside what can be stored."""

    status = 422
    code = "invalid_request"


class DatabaseUnavailable(DatabaseError):
    """The database cannot be opened or reached: a wrong URL, a server that is down, an
    unopenable SQLite file.  The message names the database, never its password."""

    code = "database_unavailable"
    retry_after_s = 5  # a restart or fail-over of the database server takes seconds


class DatabaseConflict(DatabaseError):
    """PostgreSQL rolled the transaction back because it conflicted with a concurrent one (a
    deadlock, a serialization failure): nothing of it was written, and the same request may
    succeed when tried again.  Not an outage, so not ``DatabaseUnavailable``."""

    code = "database_conflict"
    retry_after_s = 1  # the concurrent transaction has been let through by then


class ServiceUnhealthy(TracehouseError):
    """The service is up but cannot do its work: the ingest worker is dead or the queue is stuck."""

    status = 503
    exit_code = 5
    code = "service_unhealthy"


class ServerUnreachable(TracehouseError):
    """A client (``tracehouse upload``) could not reach the tracehouse service at all."""

    status = 503
    exit_code = 5
    code = "server_unreachable"

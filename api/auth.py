"""API tokens: created by the CLI, shown once, stored as sha256; scopes read < write < admin."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.core.errors import BadInput, Forbidden, NotFound, Unauthorized
from tracehouse.schema.models import ApiToken, Run

SCOPES = ("read", "write", "admin")
_RANK = {scope: i for i, scope in enumerate(SCOPES)}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, scope: str) -> str:
    """Store a new token and return it; this is the only time it exists in clear."""
    if scope not in _RANK:
        raise BadInput(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    token = "th_" + secrets.token_urlsafe(32)
    session.add(
        ApiToken(name=name, scope=scope, token_sha256=_digest(token), created_at=datetime.now(UTC), revoked=False)
    )
    session.flush()
    return token


def authorize(session: Session, header: str | None, needed: str, *, public_read: bool) -> ApiToken | None:
    """The token behind an ``Authorization: Bearer`` header if it grants ``needed``.

    401 when there is no valid token, 403 when the token's scope is too small; reads need no
    token on a ``--public-read`` server.
    """
    if needed == "read" and public_read and not header:
        return None
    if not header or not header.lower().startswith("bearer "):
        raise Unauthorized("missing API token: send 'Authorization: Bearer <token>'")
    token = session.scalars(
        select(ApiToken).where(ApiToken.token_sha256 == _digest(header[7:].strip()), ApiToken.revoked.is_(False))
    ).first()
    if token is None:
        raise Unauthorized("invalid or revoked API token")
    if _RANK[token.scope] < _RANK[needed]:
        raise Forbidden(f"token '{token.name}' has scope {token.scope}; this needs {needed}")
    return token


def list_tokens(session: Session) -> list[dict[str, object]]:
    """Every token's id, holder, scope, creation time and state; never the token or its hash."""
    rows = session.execute(
        select(ApiToken.id, ApiToken.name, ApiToken.scope, ApiToken.created_at, ApiToken.revoked).order_by(ApiToken.id)
    ).all()
    return [{"token_id": r[0], "name": r[1], "scope": r[2], "created_at": r[3], "revoked": bool(r[4])} for r in rows]


def revoke_token(session: Session, token_id: int) -> None:
    """Revoke a token for good: it answers 401 from then on (revoking twice is not an error)."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"token {token_id} does not exist")
    token.revoked = True


def check_run_owner(token: ApiToken | None, run: Run, action: str) -> None:
    """A write token may change the runs it uploaded; any other run (another lab's, or one
    ingested locally) needs an admin token."""
    if token is None or token.scope == "admin" or run.uploaded_by_token_id == token.id:
        return
    raise Forbidden(f"run {run.id} was not uploaded with token '{token.name}'; to {action} it, use an admin token")

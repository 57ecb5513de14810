"""API tokens: list and revoke (admin only).  Tokens are created with ``tracehouse token create``
on the server's database, so a token never travels except to its holder."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from tracehouse.api.auth import list_tokens, revoke_token
from tracehouse.api.deps import AdminToken, SessionDep

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


@router.get("", summary="List API tokens (admin)")
def tokens(session: SessionDep, _: AdminToken) -> Response:
    """Each token's id, holder name, scope, creation time and whether it is revoked (never the token)."""
    return Response(orjson.dumps(list_tokens(session), option=orjson.OPT_NAIVE_UTC), media_type="application/json")


@router.delete("/{token_id}", status_code=204, summary="Revoke an API token (admin)")
def revoke(token_id: int, session: SessionDep, _: AdminToken) -> Response:
    """From now on the token answers 401; its runs keep it as their uploader."""
    revoke_token(session, token_id)
    return Response(status_code=204)

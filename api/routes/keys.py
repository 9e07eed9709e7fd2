"""API key management for admins: list, create (token shown once), revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth import ApiKeyInfo, Role, create_key, list_keys, revoke_key
from api.deps import Conn, KeyManager

router = APIRouter(prefix="/keys", tags=["keys"])


class ApiKeyPublic(BaseModel):
    """A key as listed: never its token."""

    id: int
    prefix: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, info: ApiKeyInfo) -> ApiKeyPublic:
        """Convert the domain value."""
        return cls(
            id=info.id,
            prefix=info.prefix,
            name=info.name,
            role=info.role,
            created_at=info.created_at,
            created_by=info.created_by,
            expires_at=info.expires_at,
            last_used_at=info.last_used_at,
            revoked_at=info.revoked_at,
        )


class ApiKeyCreate(BaseModel):
    """What a new key needs."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Who or what uses the key.")
    role: Role
    expires_at: datetime | None = Field(default=None, description="Optional end of validity.")


class ApiKeyCreated(ApiKeyPublic):
    """A key just created, with its token: store it now, it is never shown again."""

    token: str


@router.get("", response_model=list[ApiKeyPublic], summary="List API keys")
def get_keys(conn: Conn, caller: KeyManager, include_revoked: bool = False) -> list[ApiKeyPublic]:
    """Return the keys ordered by id (revoked ones too if asked); tokens are never listed."""
    return [ApiKeyPublic.of(k) for k in list_keys(conn, include_revoked=include_revoked)]


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key (its token is returned once)",
)
def post_key(body: ApiKeyCreate, conn: Conn, caller: KeyManager) -> ApiKeyCreated:
    """Create a key with a role; the response holds the token, which is stored only hashed."""
    created = create_key(
        conn,
        name=body.name,
        role=body.role,
        created_by=f"api:{caller.name}",
        expires_at=body.expires_at,
    )
    return ApiKeyCreated(**ApiKeyPublic.of(created.info).model_dump(), token=created.token)


@router.delete("/{key_id}", response_model=ApiKeyPublic, summary="Revoke an API key")
def delete_key(
    key_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    request: Request,
    conn: Conn,
    caller: KeyManager,
) -> ApiKeyPublic:
    """Revoke the key; it stops working at once on this worker and within the cache time."""
    info = revoke_key(conn, ref=key_id, revoked_by=f"api:{caller.name}")
    request.app.state.principal_cache.clear()
    return ApiKeyPublic.of(info)

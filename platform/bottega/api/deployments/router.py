"""HTTP routes of deployments (placeholder: the deployments domain fills this in)."""

from fastapi import APIRouter

router = APIRouter(tags=["deployments"])

"""HTTP routes of registry (placeholder: the registry domain fills this in)."""

from fastapi import APIRouter

router = APIRouter(tags=["registry"])

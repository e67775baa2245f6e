"""HTTP routes of runs (placeholder: the runs domain fills this in)."""

from fastapi import APIRouter

router = APIRouter(tags=["runs"])

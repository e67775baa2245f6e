"""HTTP routes of jobs (placeholder: the jobs domain fills this in)."""

from fastapi import APIRouter

router = APIRouter(tags=["jobs"])

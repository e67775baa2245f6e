"""Job types are discovered once each: the built-ins from their module (the distribution's own `builtin` entry
point is skipped), the components' types from their entry points."""

from __future__ import annotations

from bottega.api.jobs.types import JobTypeRegistry
from bottega.core.names import BATCH_SCORE_JOB, TRAIN_JOB


def test_builtins_come_from_one_place() -> None:
    everything = JobTypeRegistry.discover()
    assert {"builtin.echo", "builtin.sleep", "builtin.fail", TRAIN_JOB, BATCH_SCORE_JOB} <= set(everything.names())
    without = JobTypeRegistry.discover(builtins=False)
    assert not [name for name in without.names() if name.startswith("builtin.")]
    assert TRAIN_JOB in without.names()

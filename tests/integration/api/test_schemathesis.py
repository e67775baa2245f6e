"""Property-based fuzzing of the whole OpenAPI document: no request, valid or not, may cause a server error.

Examples per operation are bounded so the run stays short. Half of the project-scoped cases use an existing
project so the fuzzing reaches past the 404 of a random project name; every case carries an admin key.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from api_harness import ADMIN_TOKEN, harness
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Err

from bottega.api.db import migrate
from bottega.api.db.engine import make_engine

FUZZ_PROJECT = "fuzz"
EXAMPLES = 25


def _fuzz(operation: Any, mode: GenerationMode, failures: list[str], statuses: Counter[int]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
    )
    def run(case: Any) -> None:
        params = case.path_parameters or {}
        if "project" in params and len(str(params)) % 2 == 0:
            params["project"] = FUZZ_PROJECT
        if case.path.endswith("/watch"):
            # a long poll must not hold the fuzzing for its full default wait
            case.query = {**(case.query if isinstance(case.query, dict) else {}), "timeout": 0.2}
        response = case.call(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (an operation without parameters or body): the positive run covered it.
        assert mode is GenerationMode.NEGATIVE


def test_no_server_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    with harness(url, tmp_path / "home") as h:
        h.sdk().projects.create(FUZZ_PROJECT)
        schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", h.client.app)
        failures: list[str] = []
        statuses: Counter[int] = Counter()
        operations = 0
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                failures.append(f"the OpenAPI document has an invalid operation: {result.err()}")
                continue
            operation = result.ok()
            operations += 1
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(operation, mode, failures, statuses)
        print(f"fuzzed {operations} operations: responses by status {dict(sorted(statuses.items()))}")
        assert operations >= 10
        assert sum(n for code, n in statuses.items() if code < 300) > operations, "the fuzzing never got through"
        assert failures == [], "\n".join(failures[:20])

"""Request bodies over the JSON limit get a clear 413 before any handler runs, declared or streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from api_harness import ADMIN_TOKEN, harness


def test_json_body_over_the_limit_is_413(database_url: str, tmp_path: Path) -> None:
    with harness(database_url, tmp_path / "home", max_json_bytes=1024) as h:
        body = {"name": "eats", "description": "x" * 2000}
        response = h.call("POST", "/api/v1/projects", ADMIN_TOKEN, json=body)
        assert response.status_code == 413
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == "urn:bottega:problem:payload-too-large"
        assert "1024 bytes" in response.json()["detail"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            raw = json.dumps(body).encode()
            for start in range(0, len(raw), 256):
                yield raw[start : start + 256]

        streamed = h.client.post(
            "/api/v1/projects",
            content=chunked(),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        assert h.sdk().projects.list().total == 0, "nothing may be created by a refused request"
        assert h.call("POST", "/api/v1/projects", ADMIN_TOKEN, json={"name": "eats"}).status_code == 201

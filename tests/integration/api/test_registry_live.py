"""The model DB over real HTTP (uvicorn on a local port): the `bottega models` CLI end to end, and a damaged
artifact whose download the server cuts short, as a client on the network sees it."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from api_harness import ApiHarness
from typer.testing import CliRunner

from bottega.cli.main import app
from bottega.core.errors import IntegrityFailure
from bottega.sdk import Client

MIB = 1024 * 1024


@pytest.fixture
def live_url(api: ApiHarness) -> Iterator[str]:
    """The test's app served by uvicorn on 127.0.0.1 (same database and blob store as `api`)."""
    config = uvicorn.Config(api.client.app, host="127.0.0.1", port=0, lifespan="off", log_level="critical")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start in 20 s"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


class Cli:
    def __init__(self, url: str, token: str) -> None:
        self.runner = CliRunner()
        self.base = ["--url", url, "--token", token]

    def __call__(self, *args: str, code: int = 0) -> str:
        result = self.runner.invoke(app, [*self.base, *args])
        assert result.exit_code == code, f"{args}: {result.exit_code}\n{result.output}"
        return result.output

    def json(self, *args: str) -> object:
        return json.loads(self("--json", *args))


def stored(api: ApiHarness, sha: str) -> Path:
    return Path(api.settings.resolved_artifacts_url()) / "blobs" / sha[:2] / sha


def test_cli_end_to_end(api: ApiHarness, live_url: str, tmp_path: Path) -> None:
    cli = Cli(live_url, api.project("eats", owner="alice"))
    assert "created model eats/eta" in cli("models", "create", "eats", "eta", "--tag", "team=eats")
    model_dir = tmp_path / "model"
    (model_dir / "weights").mkdir(parents=True)
    (model_dir / "weights" / "w.bin").write_bytes(os.urandom(3 * MIB))
    (model_dir / "MLmodel").write_text("flavor: onnx\n")
    signature = tmp_path / "signature.json"
    signature.write_text(json.dumps({"inputs": [{"name": "distance_km", "type": "float64"}], "outputs": []}))
    out = cli(
        "models", "register", "eats", "eta", str(model_dir), "--flavor", "onnx",
        "--signature", f"@{signature}", "--metric", "rmse=3.5", "--lineage", '{"dataset": "eats/2026-11"}',
        "--description", "first",
    )  # fmt: skip
    assert "registered eats/eta v1 (2 artifact(s))" in out
    created = cli.json("models", "register", "eats", "eta", str(model_dir / "MLmodel"), "--flavor", "python")
    assert isinstance(created, dict)
    assert created["version"] == 2
    assert [a["path"] for a in created["artifacts"]] == ["MLmodel"]
    assert "eats/eta@production -> v1" in cli("models", "alias", "eats", "eta", "production", "1")
    listed = cli.json("models", "list", "eats", "--tag", "team=eats")
    assert isinstance(listed, dict)
    assert [(m["name"], m["latest_version"], m["aliases"]) for m in listed["items"]] == [("eta", 2, {"production": 1})]
    versions = cli.json("models", "versions", "eats", "eta")
    assert isinstance(versions, dict)
    assert [v["version"] for v in versions["items"]] == [2, 1]
    shown = cli("models", "version", "eats", "eta", "production")
    for expected in ("eta v1", "distance_km", "float64", "rmse", "3.5", "eats/2026-11", "weights/w.bin"):
        assert expected in shown
    shown_json = cli.json("models", "version", "eats", "eta", "1")
    assert isinstance(shown_json, dict)
    assert shown_json["lineage"]["created_by"] == "alice"
    dest = tmp_path / "out"
    assert "downloaded 2 file(s)" in cli("models", "download", "eats", "eta", "production", "--dest", str(dest))
    assert (dest / "weights" / "w.bin").read_bytes() == (model_dir / "weights" / "w.bin").read_bytes()
    positional = tmp_path / "positional"  # the folder as a positional argument, as the SDK takes it
    assert "downloaded 2 file(s)" in cli("models", "download", "eats", "eta", "production", str(positional))
    assert (positional / "weights" / "w.bin").read_bytes() == (model_dir / "weights" / "w.bin").read_bytes()
    both = cli("models", "download", "eats", "eta", "1", str(positional), "--dest", str(dest), code=2)
    assert "two folders given" in both
    report = cli.json("models", "verify", "eats", "eta", "production")
    assert isinstance(report, list)
    assert {r["status"] for r in report} == {"ok"}
    assert "removed alias production" in cli("models", "unalias", "eats", "eta", "production")
    assert cli.json("models", "aliases", "eats", "eta") == []
    cli("models", "update", "eats", "eta", "--description", "ETA", "--untag", "team")
    fetched = cli.json("models", "get", "eats", "eta")
    assert isinstance(fetched, dict)
    assert (fetched["description"], fetched["tags"]) == ("ETA", {})
    cli("models", "delete", "eats", "eta", "--yes")
    assert "does not exist" in cli("models", "get", "eats", "eta", code=2)


def test_cli_errors_and_integrity_failures(api: ApiHarness, live_url: str, tmp_path: Path) -> None:
    cli = Cli(live_url, api.project("eats", owner="alice"))
    cli("models", "create", "eats", "eta")
    assert "not valid JSON" in cli("models", "register", "eats", "eta", "--signature", "{nope", code=2)
    assert "is not a number" in cli("models", "register", "eats", "eta", "--metric", "rmse=low", code=2)
    bad_type = '{"inputs": [{"name": "x", "type": "complex"}]}'
    local = tmp_path / "m.bin"
    local.write_bytes(b"weights" * 100)
    out = cli("models", "register", "eats", "eta", str(local), "--signature", bad_type, code=2)
    assert "signature.inputs.0.type" in out
    cli("models", "register", "eats", "eta", str(local))
    sha = hashlib.sha256(local.read_bytes()).hexdigest()
    blob = stored(api, sha)
    blob.write_bytes(b"x" + blob.read_bytes()[1:])
    out = cli("models", "verify", "eats", "eta", code=1)
    assert "corrupted" in out
    assert "failed their integrity check" in out
    out = cli("models", "download", "eats", "eta", "--dest", str(tmp_path / "out"), code=1)
    assert "integrity" in out
    assert not list((tmp_path / "out").iterdir())


def test_a_damaged_download_breaks_on_the_wire(api: ApiHarness, live_url: str, tmp_path: Path) -> None:
    token = api.project("eats", owner="alice")
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(2 * MIB + 1000))
    with Client(live_url, token) as sdk:
        sdk.models.create("eats", "eta")
        version = sdk.models.register_version("eats", "eta", "torch", {"model.pt": local})
        assert sdk.models.download("eats", "eta", 1, tmp_path / "good")["model.pt"].read_bytes() == local.read_bytes()
        blob = stored(api, version.artifacts[0].sha256)
        data = bytearray(blob.read_bytes())
        data[10] ^= 0x01
        blob.write_bytes(bytes(data))
        with pytest.raises(IntegrityFailure, match="stopped after"):
            sdk.models.download("eats", "eta", 1, tmp_path / "bad")
        assert not list((tmp_path / "bad").iterdir())
        assert sdk.models.verify("eats", "eta", 1).artifacts[0].status == "corrupted"

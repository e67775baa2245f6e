"""`bottega runs ...` against the in-process API (the CLI's SDK client is pointed at the test app)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from api_harness import ApiHarness
from cli_harness import cli_invoker


@pytest.fixture
def cli(api: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> Any:
    return cli_invoker(api, monkeypatch, "runs", api.project("eats", owner="alice"))


def test_run_lifecycle_from_the_shell(cli: Any) -> None:
    run = cli("create", "eats", "--name", "xgb", "--param", "depth=6", "--tag", "team=ranking")
    assert (run["status"], run["params"], run["tags"]) == ("running", {"depth": "6"}, {"team": "ranking"})
    rid = run["id"]
    assert cli("log-param", "eats", rid, "eta=0.1", "rounds=100")["params"] == {
        "depth": "6",
        "eta": "0.1",
        "rounds": "100",
    }
    cli("log-metric", "eats", rid, "auc", "0.91", "--step", "3")
    cli("log-metric", "eats", rid, "auc", "0.80", "--step", "1")
    assert [p["step"] for p in cli("metric", "eats", rid, "auc")] == [1, 3]
    assert cli("tag", "eats", rid, "stage=dev", "--delete", "team")["tags"] == {"stage": "dev"}
    assert cli("finish", "eats", rid, "--status", "failed")["status"] == "failed"
    got = cli("get", "eats", rid)
    assert got["metrics"]["auc"]["value"] == 0.91
    page = cli("list", "eats", "--metric", "auc>0.9", "--param", "depth:6", "--order-by", "-metrics.auc")
    assert [r["id"] for r in page["items"]] == [rid]
    assert cli("list", "eats", "--status", "finished")["total"] == 0
    other = cli("create", "eats", "--name", "other", "--param", "depth=8")["id"]
    compared = cli("compare", "eats", rid, other)
    assert [row["values"] for row in compared["params"] if row["key"] == "depth"] == [["6", "8"]]
    cli("delete", "eats", rid, "--yes")
    assert cli("list", "eats")["total"] == 1


def test_human_output_and_errors(cli: Any) -> None:
    rid = cli("create", "eats", "--name", "baseline", "--param", "lr=0.1")["id"]
    cli("log-metric", "eats", rid, "loss", "0.25")
    listed = cli("list", "eats", as_json=False)
    assert "baseline" in listed
    assert "loss=0.25" in listed
    shown = cli("get", "eats", rid, as_json=False)
    assert "lr" in shown
    assert "metrics (latest)" in shown
    other = cli("create", "eats", "--name", "second")["id"]
    assert "param lr" in cli("compare", "eats", rid, other, as_json=False)
    error = cli("log-param", "eats", rid, "lr=0.2", as_json=False, code=2)
    assert "immutable" in error
    assert "is not KEY=VALUE" in cli("create", "eats", "--param", "oops", as_json=False, code=2)


def test_upload_download_and_list_artifacts(cli: Any, tmp_path: Path) -> None:
    rid = cli("create", "eats", "--name", "r")["id"]
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "roc.png").write_bytes(b"roc" * 1000)
    (folder / "sub" / "pr.png").write_bytes(b"pr" * 1000)
    single = tmp_path / "model.bin"
    single.write_bytes(b"m" * 3_000_000)
    uploaded = cli("upload", "eats", rid, str(single), "--as", "models/model.bin")
    assert uploaded[0]["sha256"] == hashlib.sha256(single.read_bytes()).hexdigest()
    assert [a["path"] for a in cli("upload", "eats", rid, str(folder))] == ["plots/roc.png", "plots/sub/pr.png"]
    human = cli("upload", "eats", rid, str(single), as_json=False)
    assert "uploaded model.bin (3000000 bytes" in human
    listed = cli("artifacts", "eats", rid, "--prefix", "plots/")
    assert [a["path"] for a in listed["items"]] == ["plots/roc.png", "plots/sub/pr.png"]
    out = tmp_path / "out"
    got = cli("download", "eats", rid, "models/model.bin", str(out / "m.bin"))
    assert Path(got["file"]).read_bytes() == single.read_bytes()
    assert "downloaded" in cli("download", "eats", rid, "plots/roc.png", str(out), as_json=False)
    assert (out / "roc.png").read_bytes() == b"roc" * 1000
    assert "no artifact" in cli("download", "eats", rid, "nope", str(out), as_json=False, code=2)

"""`bottega deployments ...` against the real app (the CLI's SDK client is pointed at the test server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from api_harness import ApiHarness
from sqlalchemy import select
from typer.testing import CliRunner

from bottega.api.db.tables import Model, ModelAlias, ModelVersion, Project
from bottega.cli import common
from bottega.cli.main import app
from bottega.sdk import Client


@pytest.fixture
def cli(api: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> Any:
    token = api.project("eats", owner="alice")
    maker = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    with maker() as session, session.begin():
        project_id = session.scalar(select(Project.id).where(Project.name == "eats"))
        model = Model(project_id=project_id, name="eta", created_by="alice")
        session.add(model)
        session.flush()
        versions = [ModelVersion(model_id=model.id, version=v, flavor="onnx", created_by="alice") for v in (1, 2, 3)]
        session.add_all(versions)
        session.flush()
        session.add(ModelAlias(model_id=model.id, alias="champion", version_id=versions[1].id, updated_by="alice"))
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps long lines at the terminal width
    monkeypatch.setattr(common, "Client", lambda url, token: Client(token=token, http=api.client))
    runner = CliRunner()

    def run(*args: str, code: int = 0, as_json: bool = False, stdin: str | None = None) -> Any:
        flags = ["--token", token] + (["--json"] if as_json else [])
        result = runner.invoke(app, [*flags, "deployments", *args], input=stdin)
        assert result.exit_code == code, f"{args}: {result.exit_code}\n{result.stdout}\n{result.stderr}"
        if as_json and code == 0:
            return json.loads(result.stdout)
        return result.stdout + result.stderr

    return run


def test_create_with_flags_get_and_list(cli: Any) -> None:
    made = cli("create", "eats", "eta", "-t", "eta:1:90", "-t", "eta@champion:10", "--shadow", "eta:3",
               "--sticky", "user_id", "-m", "launch", as_json=True)  # fmt: skip
    assert (made["revision"], made["kind"], made["reason"]) == (1, "online", "launch")
    assert [(t["version"], t["alias"], t["weight"]) for t in made["spec"]["targets"]] == [
        (1, None, 90),
        (2, "champion", 10),
    ]
    assert made["spec"]["shadows"][0]["version"] == 3
    assert made["spec"]["routing"] == {"strategy": "sticky", "key": "user_id"}
    shown = cli("get", "eats", "eta")
    assert "eta:1 90% | eta:2@champion 10% (+ shadow eta:3)" in shown
    assert "launch" in shown
    listed = cli("list", "eats")
    assert "eta" in listed
    assert "online" in listed
    assert [d["name"] for d in cli("list", "eats", as_json=True)["items"]] == ["eta"]
    assert cli("get", "eats", "eta", "--revision", "1", as_json=True)["revision"] == 1


def test_create_from_files(cli: Any, tmp_path: Path) -> None:
    yaml_file = tmp_path / "online.yaml"
    yaml_file.write_text(
        "kind: online\nreason: from yaml\nspec:\n  targets:\n    - {model: eta, alias: champion, weight: 100}\n"
    )
    made = cli("create", "eats", "a", "-f", str(yaml_file), as_json=True)
    assert (made["reason"], made["spec"]["targets"][0]["version"]) == ("from yaml", 2)
    json_file = tmp_path / "batch.json"
    spec = {"model": "eta", "version": 3, "input": "s3://in", "output": "s3://out", "schedule": "0 3 * * *"}
    json_file.write_text(json.dumps(spec))
    batch = cli(
        "create", "eats", "b", "-f", str(json_file), "--param", "limit=10", "--param", "mode=fast", as_json=True
    )
    assert (batch["kind"], batch["spec"]["params"]) == ("batch", {"limit": 10, "mode": "fast"})
    flags = cli("create", "eats", "c", "--model", "eta@champion", "--input", "db.orders", "--output", "s3://o",
                "--schedule", "@daily", as_json=True)  # fmt: skip
    assert (flags["kind"], flags["spec"]["version"], flags["spec"]["schedule"]) == ("batch", 2, "@daily")
    broken = tmp_path / "broken.yaml"
    broken.write_text("targets: [unclosed")
    assert "neither JSON nor YAML" in cli("create", "eats", "d", "-f", str(broken), code=2)


def test_update_traffic_rollback_history_undeploy(cli: Any) -> None:
    cli("create", "eats", "eta", "-t", "eta:1:100")
    assert "--expected-revision 1" in cli("update", "eats", "eta", "-t", "eta:2:100", code=2)
    updated = cli("update", "eats", "eta", "-t", "eta:2:100", "--expected-revision", "1", "-m", "v2", as_json=True)
    assert (updated["revision"], updated["spec"]["targets"][0]["version"]) == (2, 2)
    stale = cli("update", "eats", "eta", "-t", "eta:3:100", "--expected-revision", "1", code=2)
    assert "is at revision 2, not 1" in stale
    forced = cli("update", "eats", "eta", "--shadow", "eta:3", "--force", as_json=True)
    assert (forced["revision"], forced["spec"]["targets"][0]["version"]) == (3, 2)
    assert "traffic set" in cli("traffic", "eats", "eta", "eta:2=80", "eta:3=20", "-m", "canary")  # shadow promoted
    assert cli("get", "eats", "eta", as_json=True)["spec"]["shadows"] == []
    assert "sum to 100" in cli("traffic", "eats", "eta", "eta:2=80", code=2)
    assert "rolled back to revision 3" in cli("rollback", "eats", "eta", "-m", "[OPS-7] canary is slow")
    table = cli("history", "eats", "eta")
    for text in ("5 revisions", "[OPS-7] canary is slow (rollback to 3)", "eta:2 80% | eta:3 20%", "alice", "v2"):
        assert text in table
    revisions = cli("history", "eats", "eta", as_json=True)["items"]
    assert [r["revision"] for r in revisions] == [5, 4, 3, 2, 1]
    gone = cli("undeploy", "eats", "eta", "--yes", "-m", "retired", as_json=True)
    assert (gone["active"], gone["reason"]) == (False, "retired")
    assert "(undeployed) eta:2 100% (+ shadow eta:3)" in cli("list", "eats", "--all")
    assert "aborted" in cli("undeploy", "eats", "eta", stdin="n\n", code=1).lower()
    assert "already undeployed" in cli("undeploy", "eats", "eta", "--yes", code=2)


def test_batch_update_with_flags(cli: Any) -> None:
    cli("create", "eats", "b", "--model", "eta:1", "--input", "in", "--output", "out", "--schedule", "0 3 * * *")
    made = cli("update", "eats", "b", "--schedule", "0 4 * * *", "--model", "eta@champion", "--force", as_json=True)
    assert (made["spec"]["schedule"], made["spec"]["version"], made["spec"]["alias"]) == ("0 4 * * *", 2, "champion")
    assert "not a valid cron" in cli("update", "eats", "b", "--schedule", "99 * * * *", "--force", code=2)


def test_watch_once(cli: Any) -> None:
    cli("create", "eats", "eta", "-t", "eta:1:100")
    snapshot = cli("watch", "--once", as_json=True)
    assert snapshot["snapshot"]
    assert [c["name"] for c in snapshot["changes"]] == ["eta"]
    printed = cli("watch", "--once", "--project", "eats")
    assert "eats/eta r1  eta:1 100%" in printed
    assert f"sequence {snapshot['sequence']}" in printed
    quiet = cli("watch", "--once", "--since", str(snapshot["sequence"]), "--timeout", "0", as_json=True)
    assert quiet["changes"] == []


def test_bad_flags(cli: Any) -> None:
    assert "MODEL:VERSION:WEIGHT" in cli("create", "eats", "x", "-t", "eta:1", code=2)
    assert "names no model version" in cli("create", "eats", "x", "-t", "@:100", code=2)
    assert "--kind is online or batch" in cli("create", "eats", "x", "--kind", "stream", code=2)
    assert "KEY=VALUE" in cli("create", "eats", "x", "--model", "eta:1", "--param", "oops", code=2)
    assert "does not exist" in cli("get", "eats", "ghost", code=2)

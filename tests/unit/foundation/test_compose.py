"""docker-compose.yml stays consistent with the process scripts: same host ports, same server versions."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def host_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(mapping).split(":")[-2]) for mapping in service.get("ports", [])}


def pom_property(component: str, name: str) -> str:
    text = (REPO / "deploy" / "services" / "conf" / component / "pom.xml").read_text()
    match = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", text)
    assert match, f"{name} missing from the {component} pom"
    return match.group(1)


def test_compose_has_the_three_services_with_healthchecks_and_volumes() -> None:
    data = compose()
    assert set(data["services"]) >= {"postgres", "cassandra", "kafka"}
    for name in ("postgres", "cassandra", "kafka"):
        service = data["services"][name]
        assert "healthcheck" in service, name
        volume = service["volumes"][0].split(":")[0]
        assert volume in data["volumes"], f"{name} should use a named volume"


def test_host_ports_match_the_scripts(svc: ModuleType) -> None:
    services = compose()["services"]
    defaults = svc.DEFAULT_PORTS
    assert host_ports(services["postgres"]) == {defaults["BOTTEGA_POSTGRES_PORT"]}
    assert host_ports(services["cassandra"]) == {defaults["BOTTEGA_CASSANDRA_PORT"]}
    assert host_ports(services["kafka"]) == {defaults["BOTTEGA_KAFKA_PORT"]}
    env = services["kafka"]["environment"]
    assert str(defaults["BOTTEGA_KAFKA_PORT"]) in env["KAFKA_ADVERTISED_LISTENERS"]
    assert str(defaults["BOTTEGA_KAFKA_CONTROLLER_PORT"]) in env["KAFKA_CONTROLLER_QUORUM_VOTERS"]


def test_images_match_the_versions_the_scripts_run() -> None:
    services = compose()["services"]
    assert services["cassandra"]["image"] == f"cassandra:{pom_property('cassandra', 'cassandra.version')}"
    assert services["kafka"]["image"] == f"apache/kafka:{pom_property('kafka', 'kafka.version')}"
    assert services["postgres"]["image"].startswith("postgres:")


def test_client_env_points_at_the_default_ports(svc: ModuleType) -> None:
    env = svc.Settings.from_env({"HOME": "/nonexistent"}).client_env()
    assert env["BOTTEGA_TEST_CASSANDRA_HOSTS"].endswith(":19042")
    assert env["BOTTEGA_TEST_KAFKA_BOOTSTRAP"].endswith(":19092")
    assert ":15432/" in env["BOTTEGA_TEST_POSTGRES_URL"]


def test_api_service_builds_from_the_repo_and_uses_postgres() -> None:
    api = compose()["services"]["api"]
    dockerfile = REPO / api["build"]["dockerfile"]
    assert dockerfile.is_file()
    text = dockerfile.read_text()
    for folder in ("platform", "feature_store", "training", "serving", "monitoring"):
        assert f"COPY {folder} {folder}" in text, f"the image must contain {folder}/"
    assert "requirements/constraints.txt" in text
    assert '".[server]"' in text
    assert "8700" in text
    assert host_ports(api) == {8700}
    assert api["environment"]["BOTTEGA_DATABASE_URL"].startswith("postgresql+psycopg://postgres@postgres:5432/")
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_stream_worker_reaches_the_stack_from_inside_it() -> None:
    services = compose()["services"]
    worker = services["stream-worker"]
    assert worker["profiles"] == ["streaming"]  # a plain `docker compose up` does not start it
    assert worker["command"][:3] == ["bottega", "features", "stream"]
    dockerfile = (REPO / worker["build"]["dockerfile"]).read_text()
    assert '".[store,stream,spark]"' in dockerfile
    env = worker["environment"]
    # Containers reach Kafka through its INTERNAL listener, advertised under the service's name.
    kafka = services["kafka"]["environment"]
    assert f"INTERNAL://{env['BOTTEGA_KAFKA_BOOTSTRAP']}" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    port = env["BOTTEGA_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1]
    assert f"INTERNAL://:{port}" in kafka["KAFKA_LISTENERS"].split(",")
    assert env["BOTTEGA_CASSANDRA_HOSTS"] == "cassandra:9042"
    assert env["BOTTEGA_URL"] == "http://api:8700"
    assert env["BOTTEGA_ONLINE_STORE"] == "cassandra"
    assert {name for name, cond in worker["depends_on"].items() if cond["condition"] == "service_healthy"} == {
        "api",
        "kafka",
        "cassandra",
    }

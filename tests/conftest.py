"""Shared fixtures: where the real services are, and what to do when one is not running.

`make test` starts PostgreSQL, Cassandra and Kafka and sets BOTTEGA_REQUIRE_SERVICES=1, so a service that is down
fails the run. Outside it (`make pytest` without `make services-up`), tests that need a service are skipped with a
message naming it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def load_svc() -> ModuleType:
    """deploy/services/svc.py is a standalone script; load it as a module for its settings and defaults."""
    folder = REPO / "deploy" / "services"
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location("bottega_svc", folder / "svc.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(folder))


@pytest.fixture(scope="session")
def svc() -> ModuleType:
    return load_svc()


@pytest.fixture(scope="session")
def service_env(svc: ModuleType) -> dict[str, str]:
    env: dict[str, str] = svc.Settings.from_env().client_env()
    env.update({k: v for k, v in os.environ.items() if k.startswith("BOTTEGA_TEST_")})
    return env


def _reachable(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host_port: str) -> None:
    if _reachable(host_port):
        return
    message = f"{name} is not reachable at {host_port}: run `make services-up` (or `make test`)"
    if os.environ.get("BOTTEGA_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cassandra_hosts(service_env: dict[str, str]) -> str:
    hosts = service_env["BOTTEGA_TEST_CASSANDRA_HOSTS"]
    require_service("Cassandra", hosts)
    return hosts


@pytest.fixture(scope="session")
def kafka_bootstrap(service_env: dict[str, str]) -> str:
    bootstrap = service_env["BOTTEGA_TEST_KAFKA_BOOTSTRAP"]
    require_service("Kafka", bootstrap)
    return bootstrap


@pytest.fixture(scope="session")
def postgres_url(service_env: dict[str, str]) -> str:
    url = service_env["BOTTEGA_TEST_POSTGRES_URL"]
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    require_service("PostgreSQL", host_port)
    return url


@pytest.fixture
def unique_name() -> str:
    """A name no other test run uses (keyspaces, topics, consumer groups, databases)."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """A local[2] Spark session for the whole run, Python workers on this interpreter, UTC, Arrow transfers, the
    Kafka source jars on the classpath."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    from bottega.feature_store.spark_session import kafka_jars

    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.jars", ",".join(kafka_jars(fetch=True)))  # the Kafka source, for Structured Streaming
        .appName("bottega-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()

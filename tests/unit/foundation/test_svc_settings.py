"""The service script's settings: ports from the environment, with a clear error for nonsense."""

from __future__ import annotations

from types import ModuleType

import pytest


def test_ports_come_from_the_environment(svc: ModuleType) -> None:
    settings = svc.Settings.from_env({"HOME": "/h", "BOTTEGA_KAFKA_PORT": "29092", "BOTTEGA_SERVICES_STATE": "/s"})
    assert settings.kafka_port == 29092
    assert settings.cassandra_port == 19042
    assert str(settings.state) == "/s"
    assert str(settings.cache) == "/h/.cache/bottega/servers"
    assert settings.client_env()["BOTTEGA_TEST_KAFKA_BOOTSTRAP"] == "127.0.0.1:29092"


@pytest.mark.parametrize("value", ["abc", "0", "70000", "-1"])
def test_bad_port_is_a_clear_error(svc: ModuleType, value: str) -> None:
    with pytest.raises(svc.ServiceError, match=f"BOTTEGA_POSTGRES_PORT={value!r} is not a TCP port"):
        svc.Settings.from_env({"HOME": "/h", "BOTTEGA_POSTGRES_PORT": value})


def test_unknown_service_name_is_refused(svc: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        svc.main(["status", "redis"])
    assert exc.value.code == 2
    assert "unknown service(s) redis" in capsys.readouterr().err

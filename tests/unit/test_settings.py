"""Settings derived from other settings."""

from __future__ import annotations

import pytest

from resumewatch.settings import Settings


def test_the_bootstrap_follows_the_local_brokers_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BOOTSTRAP", "PORT", "BROKERS"):
        monkeypatch.delenv(f"RESUMEWATCH_KAFKA_{name}", raising=False)
    assert Settings().kafka_bootstrap == "127.0.0.1:19092"
    monkeypatch.setenv("RESUMEWATCH_KAFKA_PORT", "29092")
    assert Settings().kafka_bootstrap == "127.0.0.1:29092"
    monkeypatch.setenv("RESUMEWATCH_KAFKA_BROKERS", "3")
    assert Settings().kafka_bootstrap == "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"
    monkeypatch.setenv("RESUMEWATCH_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    assert Settings().kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    child = Settings(**{}).as_env()
    assert child["RESUMEWATCH_KAFKA_BOOTSTRAP"] == "kafka-1:9092,kafka-2:9092"

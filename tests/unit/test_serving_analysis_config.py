"""Which Prometheus addresses the operator may query: its own configuration, never the spec."""

from __future__ import annotations

import pytest

from stratus import config

DEFAULT = "http://prometheus-operated.monitoring.svc:9090"


def test_the_default_address_is_the_only_one_unless_more_are_given() -> None:
    assert config.from_env({}).prometheus_url == DEFAULT
    assert config.from_env({}).prometheus_addresses == ()
    alone = config.from_env({"STRATUS_PROMETHEUS_URL": "http://prom:9090"})
    assert (alone.prometheus_url, alone.prometheus_addresses) == ("http://prom:9090", ())


def test_the_first_of_the_list_is_the_default_unless_the_url_names_one() -> None:
    listed = config.from_env({"STRATUS_PROMETHEUS_ADDRESSES": " http://a:9090, https://b/prom ,"})
    assert listed.prometheus_url == "http://a:9090"
    assert listed.prometheus_addresses == ("http://a:9090", "https://b/prom")
    both = config.from_env(
        {"STRATUS_PROMETHEUS_URL": "http://c", "STRATUS_PROMETHEUS_ADDRESSES": "http://a:9090"}
    )
    assert (both.prometheus_url, both.prometheus_addresses) == ("http://c", ("http://a:9090",))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRATUS_PROMETHEUS_URL", "prom:9090"),
        ("STRATUS_PROMETHEUS_URL", "ftp://prom"),
        ("STRATUS_PROMETHEUS_ADDRESSES", "http://a,http://user:pw@b"),
        ("STRATUS_PROMETHEUS_ADDRESSES", "http://a/?x=1"),
        ("STRATUS_PROMETHEUS_ADDRESSES", "http://a:port"),
    ],
)
def test_a_malformed_address_stops_the_operator_at_start(name: str, value: str) -> None:
    with pytest.raises(config.ConfigError, match=name):
        config.from_env({name: value})


def test_a_resource_picks_among_the_configured_addresses_compared_normalized() -> None:
    cfg = config.OperatorConfig(
        prometheus_url="http://prom.monitoring:9090",
        prometheus_addresses=("https://Thanos.example/query/",),
    )
    assert cfg.prometheus_for(None) == "http://prom.monitoring:9090"
    # Case, the default port and a trailing slash do not matter; the admin's spelling is used.
    for same in ("HTTPS://thanos.example:443/query", "https://thanos.example/query"):
        assert cfg.prometheus_for(same) == "https://Thanos.example/query/"
    assert cfg.prometheus_for("http://prom.monitoring:9090/") == "http://prom.monitoring:9090"
    for other in (
        "http://thanos.example/query",  # another scheme
        "https://thanos.example:8443/query",  # another port
        "https://thanos.example/query/api/v1/admin",  # another path
        "https://thanos.example/query?x=/",  # a query
        "https://evil@thanos.example/query",  # credentials
        "http://metadata.google.internal/computeMetadata/v1",
    ):
        assert cfg.prometheus_for(other) is None, other


def test_normalized_addresses() -> None:
    assert config.normalize_address("HTTP://Prom:9090/") == "http://prom:9090"
    assert config.normalize_address("https://[::1]/p//") == "https://[::1]:443/p"
    for bad in ("", "prom:9090", "http://", "http://a:99999", "http://a#x"):
        assert config.normalize_address(bad) is None, bad

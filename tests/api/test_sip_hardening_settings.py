"""The SIP hardening limits (issue 12): settings under `sip:`, validated, and what the stack is built with."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import SIP_STACK, create_app
from gateway.config import ConfigError, load_settings
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_defaults() -> None:
    sip = load_settings(ROOT / "config.yaml", {}).sip
    assert (sip.udp_max_request, sip.udp_max_bodyless_request) == (16384, 4096)
    assert (sip.max_transactions_per_source, sip.max_transactions, sip.overload_retry_after) == (1000, 20000, 10)


@pytest.mark.parametrize(
    ("key", "value"),
    [("UDP_MAX_BODYLESS_REQUEST", "100"), ("UDP_MAX_REQUEST", "70000"), ("MAX_TRANSACTIONS_PER_SOURCE", "0")],
)
def test_bad_values_are_named(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"sip\.{key.lower()}"):
        load_settings(ROOT / "config.yaml", {f"MEETINGS_SIP__{key}": value})


def test_the_stack_gets_them(tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path}/m.db",
        MEETINGS_SIP__UDP_MAX_REQUEST="9000",
        MEETINGS_SIP__UDP_MAX_BODYLESS_REQUEST="2000",
        MEETINGS_SIP__MAX_TRANSACTIONS_PER_SOURCE="50",
        MEETINGS_SIP__MAX_TRANSACTIONS="500",
        MEETINGS_SIP__OVERLOAD_RETRY_AFTER="30",
    )
    stack = create_app(settings)[SIP_STACK]
    config = stack.config
    assert (config.udp_max_request, config.udp_max_bodyless_request, config.overload_retry_after) == (9000, 2000, 30)
    assert (stack.transactions.max_per_source, stack.transactions.max_total) == (50, 500)

"""The reconciler's settings: checked when loaded, and the defaults recover within a minute."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sparkjobs.config import Config


def test_the_default_settings_queue_lost_work_again_within_a_minute() -> None:
    assert Config().reconciler.recovery_bound_s <= 60


def test_a_heartbeat_that_expires_before_its_renewal_is_refused_naming_both_values() -> None:
    with pytest.raises(ValidationError, match=r"heartbeat_ttl_s \(2\.0\) must exceed") as error:
        Config(reconciler={"heartbeat_interval_s": 5, "heartbeat_ttl_s": 2})
    assert "heartbeat_interval_s (5.0)" in str(error.value)

"""Failure configs for tests: the defaults with some fields changed, validated."""

from __future__ import annotations

from typing import Any

from failure_lab.control import FailureConfig


def config_with(**changes: Any) -> FailureConfig:
    return FailureConfig.model_validate({**FailureConfig.defaults().model_dump(), **changes})

"""Shared pytest configuration: the slow tier and session-scoped fits."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=os.environ.get("LMSBAYES_RUN_SLOW") == "1",
        help="run statistical checks marked slow",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow statistical check: use --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

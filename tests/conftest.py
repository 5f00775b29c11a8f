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


# --- fitted models shared by the whole session (compiling costs 10-30 s each) ---


@pytest.fixture(scope="session")
def trials():
    from lmsbayes.data import load_trials

    return load_trials()


def quiet_fit(*args, **kwargs):
    """``lmsbayes.fit`` without its sampling warnings (tests assert on the diagnostics instead)."""
    import warnings

    import lmsbayes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmsbayes.fit(*args, **kwargs)


@pytest.fixture(scope="session")
def default_fit(trials):
    """The bundled default analysis, fitted once per test session."""
    return quiet_fit("default", trials)


@pytest.fixture(scope="session")
def eortc_fit(trials):
    """The EORTC-mirror spec (logit-normal, no covariates but line), fitted once per session."""
    return quiet_fit("eortc2021", trials)


@pytest.fixture(scope="session")
def saved_default_fit(default_fit, tmp_path_factory):
    """Path of the default fit saved to netCDF."""
    return default_fit.save(tmp_path_factory.mktemp("fits") / "default.nc")

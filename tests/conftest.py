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


# --- property-based tests: a fast profile by default, a deep one under --run-slow ---

#: Per property: examples run, and their outcomes ("accepted", "refused" with a documented error,
#: "escaped": any other exception). Printed at the end of the run.
PROPERTY_COUNTS: dict[str, dict[str, int]] = {}


def count_property(name: str, outcome: str) -> None:
    """Record one example of property ``name`` with its outcome."""
    entry = PROPERTY_COUNTS.setdefault(
        name, {"examples": 0, "accepted": 0, "refused": 0, "escaped": 0}
    )
    entry["examples"] += 1
    entry[outcome] = entry.get(outcome, 0) + 1


def pytest_configure(config: pytest.Config) -> None:
    from hypothesis import HealthCheck, settings

    common = dict(
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )
    settings.register_profile("lmsbayes-fast", max_examples=40, **common)
    settings.register_profile("lmsbayes-deep", max_examples=400, **common)
    settings.load_profile("lmsbayes-deep" if config.getoption("--run-slow") else "lmsbayes-fast")


def pytest_terminal_summary(terminalreporter) -> None:
    if not PROPERTY_COUNTS:
        return
    terminalreporter.section("property-based tests")
    for name, c in sorted(PROPERTY_COUNTS.items()):
        extra = "".join(
            f", {k} {v}"
            for k, v in c.items()
            if k not in ("examples", "accepted", "refused", "escaped")
        )
        terminalreporter.write_line(
            f"{name}: {c['examples']} examples, {c['escaped']} escaped the documented "
            f"errors (accepted {c['accepted']}, refused {c['refused']}{extra})"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow statistical check: use --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# --- fitted models shared by the whole session (compiling costs 10-30 s each) ---


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """lmsbayes.cache writes into a folder of the test session, never the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMSBAYES_CACHE", str(tmp_path_factory.mktemp("lmsbayes-cache")))
        yield


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


@pytest.fixture(scope="session")
def small_fit_file(tmp_path_factory):
    """A saved fit of the default spec with few draws (a small file)."""
    from lmsbayes.spec import load_spec

    spec = load_spec("default").replace(**{"exact.draws": 200})
    return quiet_fit(spec).save(tmp_path_factory.mktemp("fitfile") / "small.nc")


@pytest.fixture(scope="session")
def small_tree(small_fit_file):
    """The DataTree of ``small_fit_file`` as netCDF holds it (to write altered copies of it)."""
    import xarray as xr

    return xr.load_datatree(small_fit_file, engine="netcdf4")

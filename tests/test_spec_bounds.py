"""The spec reader at the door: types and ranges before any cast, bounded work, every message naming
the file.

Each case of issue 11 that reached the sampler (``seed = -1`` -> OverflowError after compiling,
``nu = inf`` -> RuntimeError and a segfault, ``draws = 1000000000000`` -> an aborted allocation,
a population typo that dropped arms silently) is refused here, before anything is compiled.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lmsbayes.spec import MAX_TOTAL_DRAWS, SpecError, load_spec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = (ROOT / "models" / "default.toml").read_text(encoding="utf-8")


def spec_file(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def with_line(section: str, line: str) -> str:
    """The default spec with ``line`` added at the top of ``[section]`` (a later duplicate key wins
    nowhere:
    the default's own key is removed first)."""
    key = line.split("=")[0].strip()
    lines = [x for x in DEFAULT.splitlines() if x.split("=")[0].strip() != key or "=" not in x]
    out = []
    for x in lines:
        out.append(x)
        if x.strip() == f"[{section}]":
            out.append(line)
    return "\n".join(out) + "\n"


def refused(tmp_path: Path, text: str, *needles: str) -> str:
    path = spec_file(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    for needle in needles:
        assert needle in msg, msg
    return msg


@pytest.mark.parametrize(
    "section, line, needle",
    [
        ("sampler", "seed = -1", "seed must be an integer in 0..4294967295"),
        ("sampler", "seed = 4294967296", "seed must be an integer in 0..4294967295"),
        ("sampler", "seed = 99999999999999999999999", "within 64 bits"),
        ("sampler", "seed = 1.5", "seed must be an integer"),
        ("sampler", "seed = true", "seed must be an integer"),
        ("sampler", 'seed = "1"', "seed must be an integer"),
        ("sampler", "draws = 1000000000000", f"exceeds the bound of {MAX_TOTAL_DRAWS:,} draws"),
        ("sampler", "draws = 50001", "50,001 x 4 exceeds"),
        ("sampler", "chains = 65", "chains must be <= 64"),
        ("sampler", "tune = 1000000", "tune must be <= 100,000"),
        ("sampler", "target_accept = nan", "target_accept must be finite"),
        ("random_effects", "nu = inf", "nu must be finite"),
        ("random_effects", "nu = nan", "nu must be finite"),
        ("random_effects", "nu = 0.5", "nu must be in [1, 1000]"),
        ("random_effects", "nu = 1e6", "nu must be in [1, 1000]"),
        ("model", "uterine_centre = -inf", "uterine_centre must be finite"),
        ("priors", 'tau = { dist = "HalfNormal", sigma = 1e7 }', "must be in [1e-06, 1e+06]"),
        # issue 20: a scale of 1e-300 stopped the engine's mode search (exit 70)
        ("priors", 'tau = { dist = "HalfNormal", sigma = 1e-300 }', "must be in [1e-06, 1e+06]"),
        ("priors", 'beta = { dist = "Normal", mu = 2e6, sigma = 1 }', "within +-1e+06"),
        ("priors", 'tau = { dist = "HalfNormal", sigma = inf }', "must be a finite number"),
        (
            "priors",
            'tau = { dist = "HalfStudentT", nu = 0.1, sigma = 1 }',
            "nu must be in [1, 1000]",
        ),
        (
            "priors",
            'alpha = { dist = "Normal", mu = 99999999999999999999, sigma = 1 }',
            "must be a finite number",
        ),
        ("priors", "alpha = { dist = 5, sigma = 1 }", "unknown distribution 5"),
        ("data", "years = [2003, 99999]", "years must lie in 1900..2100"),
        ("data", "years = [-5, 2020]", "years must lie in 1900..2100"),
        ("data", "years = [2003, 99999999999999999999]", "within 64 bits"),
        ("data", "lines = [1]", "lines[0] must be a string"),
        ("data", 'populations = ["uLSM"]', "unknown population 'uLSM'; did you mean 'uLMS'?"),
        ("data", 'populations = ["LMS", "soft tissue"]', "unknown population 'soft tissue'"),
        ("model", 'covariates = [["line"]]', "covariates[0] must be a string"),
        ("model", "covariates = [{ a = 1 }]", "covariates[0] must be a string"),
        ("thresholds", "hr = [0.65, inf]", "hr[1] must be finite"),
        ("thresholds", "hr = []", "at least one hazard ratio"),
    ],
)
def test_values_refused_before_any_cast(tmp_path, section, line, needle):
    refused(tmp_path, with_line(section, line), needle)


@pytest.mark.parametrize(
    "landmarks, needle",
    [
        ("[3, inf]", "landmarks[1] must be finite"),
        ("[3, 1e400]", "landmarks[1] must be finite"),  # TOML reads 1e400 as inf
        ("[3, 99999999999999999999999]", "within 64 bits"),
        ("[" + ", ".join(str(m) for m in range(1, 26)) + "]", "at most 24 landmarks"),
        ('["3"]', "landmarks[0] must be a number"),
    ],
)
def test_landmarks(tmp_path, landmarks, needle):
    refused(tmp_path, DEFAULT.replace("landmarks = [3, 6]", f"landmarks = {landmarks}"), needle)


@pytest.mark.parametrize(
    "section, line",
    [
        ("sampler", "seed = 0"),
        ("sampler", "seed = 4294967295"),
        ("sampler", "draws = 50000"),  # 50,000 x 4 = the bound exactly
        ("random_effects", "nu = 1000"),
        ("data", 'populations = ["uLMS", "LMS"]'),
    ],
)
def test_values_at_the_bounds_are_accepted(tmp_path, section, line):
    spec = load_spec(spec_file(tmp_path, with_line(section, line)))
    assert spec.name == "default"  # the name the file gives


def test_an_accepted_spec_has_its_population_labels(tmp_path):
    spec = load_spec(spec_file(tmp_path, with_line("data", 'populations = ["uLMS"]')))
    assert spec.data.populations == ("uLMS",)


# --- the file itself
# ------------------------------------------------------------------------------------


def test_a_spec_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(DEFAULT.encode("utf-8").replace(b"Survival-coherent", b"Survival-coh\xe4rent"))
    with pytest.raises(SpecError, match=r"not valid UTF-8 \(line \d+, byte \d+"):
        load_spec(path)


def test_a_spec_too_large(tmp_path):
    path = spec_file(tmp_path, DEFAULT + "#" * 1_000_001)
    with pytest.raises(SpecError, match="bytes, more than the 1,000,000 this reader accepts"):
        load_spec(path)


def test_a_spec_with_a_nul_byte(tmp_path):
    path = tmp_path / "nul.toml"
    path.write_bytes(DEFAULT.encode() + b"\0")
    with pytest.raises(SpecError, match=f"^{path}: the spec contains a NUL byte"):
        load_spec(path)


def test_a_spec_nested_too_deeply(tmp_path):
    path = spec_file(tmp_path, "x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(SpecError, match="nested too deeply"):
        load_spec(path)


def test_a_byte_order_mark_is_fine(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + DEFAULT.encode())
    assert load_spec(path).name == "default"


def test_a_directory_is_not_a_spec(tmp_path):
    with pytest.raises(FileNotFoundError, match="no spec file"):
        load_spec(tmp_path)

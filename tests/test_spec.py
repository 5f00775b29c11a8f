"""Model specifications: bundled specs, strict validation, value semantics (no PyMC)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from lmsbayes.spec import (
    COVARIATES,
    LIKELIHOODS,
    ModelSpec,
    Prior,
    SpecError,
    bundled_specs,
    load_spec,
    parse_spec,
)

MODELS = Path(__file__).resolve().parents[1] / "models"


def problems_of(text: str) -> list[str]:
    """The problems a spec text produces (fails the test if it parses)."""
    with pytest.raises(SpecError) as info:
        parse_spec(tomllib.loads(text))
    return info.value.problems


def one_problem(text: str) -> str:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


# --- bundled specs -----------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "eortc2021", "uterine"])
def test_bundled_spec_loads_by_name_and_by_path(name):
    assert name in bundled_specs()
    spec = load_spec(name)
    assert isinstance(spec, ModelSpec)
    assert spec.name == name
    assert spec.model.likelihood in LIKELIHOODS
    assert set(spec.main_effects) <= set(COVARIATES)
    assert spec.text  # the TOML it came from is kept for provenance
    assert load_spec(MODELS / f"{name}.toml") == spec


def test_default_spec_content():
    spec = load_spec("default")
    assert spec.landmarks == (3.0, 6.0)
    assert spec.model.covariates == ("line", "nrt", "line:nrt", "uterine")
    assert spec.random_effects.tau_by == "line"
    assert spec.priors.tau == Prior("HalfNormal", sigma=0.5)
    assert (spec.sampler.draws, spec.sampler.chains) == (2000, 4)
    assert spec.thresholds.hr == (0.65,)


def test_eortc_spec_mirrors_the_paper():
    spec = load_spec("eortc2021")
    assert spec.model.likelihood == "logit-normal"
    assert spec.model.covariates == ("line",)
    assert spec.data.years == (2003, 2018)
    assert spec.data.evidence == ("publication",)


def test_missing_spec_names_the_bundled_ones(tmp_path):
    with pytest.raises(FileNotFoundError, match="no spec file .*bundled: .*default"):
        load_spec(tmp_path / "nope.toml")


def test_empty_spec_is_all_defaults():
    spec = parse_spec({})
    assert spec == ModelSpec()


# --- strict reading: unknown keys, suggestions, all problems at once ---------


def test_unknown_key_is_named_with_a_suggestion():
    msg = one_problem('[model]\nlikelyhood = "logit-binomial"\n')
    assert "'likelyhood'" in msg and "[model]" in msg
    assert "did you mean 'likelihood'?" in msg


def test_unknown_top_level_key_suggests():
    msg = one_problem("landmark = [3, 6]\n")
    assert "'landmark'" in msg and "did you mean 'landmarks'?" in msg


def test_unknown_key_without_a_close_match_lists_valid_keys():
    msg = one_problem("[sampler]\nxyzzy = 1\n")
    assert "'xyzzy'" in msg and "valid keys are" in msg and "'draws'" in msg


def test_unknown_key_message_names_the_source_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[model]\nlikelyhood = "logit-binomial"\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "did you mean 'likelihood'?" in msg
    assert "\n" not in msg  # one problem, one line


def test_several_problems_are_reported_at_once():
    text = """
    [model]
    likelyhood = "logit-binomial"
    [sampler]
    draws = "many"
    [priors]
    alpha = { dist = "Normel", sigma = 1 }
    tau = { dist = "HalfNormal", sigma = -1 }
    [thresholds]
    refrence = "pooled"
    """
    with pytest.raises(SpecError) as info:
        parse_spec(tomllib.loads(text), source="several.toml")
    problems = info.value.problems
    assert len(problems) == 5, problems
    msg = str(info.value)
    assert msg.startswith("several.toml: 5 problems")
    for needle in (
        "likelyhood",
        "draws must be an integer",
        "Normel",
        "tau.sigma must be > 0",
        "refrence",
    ):
        assert needle in msg
    assert len(msg.splitlines()) == 6  # header + one line per problem


def test_several_semantic_problems_are_reported_at_once():
    text = """
    landmarks = [3, 3]
    [model]
    likelihood = "logit-poisson"
    covariates = ["line", "lines"]
    [random_effects]
    tau_by = "trial"
    [sampler]
    chains = 0
    """
    problems = problems_of(text)
    assert len(problems) == 5, problems
    joined = "\n".join(problems)
    assert "duplicates" in joined and "'logit-poisson'" in joined and "'lines'" in joined
    assert "tau_by" in joined and "chains must be >= 1" in joined


@pytest.mark.parametrize(
    "text, needle",
    [
        ('[model]\ncovariates = ["lines"]', "unknown covariate 'lines'; did you mean 'line'?"),
        ('[model]\ncovariates = ["line:histology"]', "unknown covariate 'histology'"),
        ('[model]\ncovariates = ["line", "nrt:line", "nrt"]\n', None),  # valid
        ('[model]\ncovariates = ["line", "line"]', "'line' is listed twice"),
        ('[model]\ncovariates = ["line:nrt", "nrt:line"]', "listed twice"),
        ('[model]\ncovariates = ["line:line"]', "repeats a term"),
        ('[model]\ncovariates = "line"', "covariates must be a list"),
    ],
)
def test_covariates(text, needle):
    if needle is None:
        assert parse_spec(tomllib.loads(text)).main_effects == ("line", "nrt")
    else:
        assert any(needle in p for p in problems_of(text))


# --- priors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "prior, needle",
    [
        (
            'alpha = { dist = "Normel", sigma = 1 }',
            "unknown distribution 'Normel'; did you mean 'Normal'?",
        ),
        ('alpha = { dist = "Gumbel", mu = 0, beta = 1 }', "unknown distribution 'Gumbel'"),
        ('alpha = { dist = "Normal" }', "Normal needs ['sigma']"),
        ('tau = { dist = "HalfStudentT", sigma = 1 }', "HalfStudentT needs ['nu']"),
        ('tau = { dist = "HalfNormal", sigma = -0.5 }', "tau.sigma must be > 0, got -0.5"),
        ('tau = { dist = "HalfNormal", sigma = 0 }', "tau.sigma must be > 0"),
        ('tau = { dist = "HalfNormal", sd = 0.5 }', "has no parameter 'sd'"),
        ('tau = { dist = "HalfNormal", sigma = "wide" }', "tau.sigma must be a finite number"),
        ('tau = { dist = "HalfNormal", sigma = inf }', "tau.sigma must be a finite number"),
        ('tau = { dist = "HalfNormal", sigma = true }', "tau.sigma must be a finite number"),
        ("tau = 0.5", "[priors] tau must be a table"),
        ('tau = { dist = "Uniform", lower = 2, upper = 1 }', "Uniform needs lower < upper"),
        (
            'beta = { dist = "HalfNormal", sigma = 1 }',
            "beta must be a distribution on the real line",
        ),
    ],
)
def test_bad_prior(prior, needle):
    problems = problems_of(f"[priors]\n{prior}\n")
    assert any(needle in p for p in problems), problems


@pytest.mark.parametrize(
    "prior",
    [
        '{ dist = "Normal", mu = 0, sigma = 1 }',
        '{ dist = "StudentT", nu = 3, sigma = 1 }',
        '{ dist = "Uniform", lower = -1, upper = 2 }',
    ],
)
def test_tau_prior_with_real_support_is_rejected(prior):
    msg = one_problem(f"[priors]\ntau = {prior}\n")
    assert "[priors] tau must have positive support" in msg


@pytest.mark.parametrize(
    "prior",
    [
        Prior("HalfNormal", sigma=0.5),
        Prior("Normal", mu=0.0, sigma=2.0),
        Prior("Normal", sigma=1),
        Prior("StudentT", nu=3, mu=-1.5, sigma=0.25),
        Prior("Uniform", lower=0, upper=1e-7),
        Prior("HalfCauchy", beta=0.1),
        Prior("Beta", alpha=2, beta=3),
    ],
)
def test_prior_repr_round_trips(prior):
    again = eval(repr(prior), {"Prior": Prior})  # noqa: S307 - our own repr
    assert again == prior
    assert hash(again) == hash(prior)
    assert repr(again) == repr(prior)


def test_prior_value_semantics():
    assert Prior("HalfNormal", sigma=0.5) == Prior("HalfNormal", sigma=0.5)
    assert Prior("Normal", mu=0, sigma=1) == Prior("Normal", sigma=1.0, mu=0.0)  # order, int/float
    assert Prior("HalfNormal", sigma=0.5) != Prior("HalfNormal", sigma=0.25)
    assert repr(Prior("HalfNormal", sigma=0.5)) == "Prior('HalfNormal', sigma=0.5)"
    assert Prior("Normal", mu=0, sigma=2).kwargs == {"mu": 0.0, "sigma": 2.0}
    assert Prior("Normal", mu=0, sigma=2).to_dict() == {"dist": "Normal", "mu": 0.0, "sigma": 2.0}


# --- landmarks and other values ----------------------------------------------


@pytest.mark.parametrize(
    "text, needle",
    [
        ('landmarks = []\n[model]\nlikelihood = "survival"', "at least one landmark"),
        ("landmarks = [0, 6]", "months in (0, 120], got 0.0"),
        ("landmarks = [-3]", "months in (0, 120]"),
        ("landmarks = [3, 240]", "got 240.0"),
        ("landmarks = [3, 6, 3.0]", "duplicates"),
        ('landmarks = [3, "6"]', "got '6'"),
        ("landmarks = [3, true]", "got True"),
        ("landmarks = 6", "landmarks must be a list"),
    ],
)
def test_bad_landmarks(text, needle):
    assert any(needle in p for p in problems_of(text))


def test_a_binomial_table_needs_no_landmarks():
    assert parse_spec({"landmarks": [], "model": {"likelihood": "logit-binomial"}}).landmarks == ()


def test_landmarks_are_floats():
    assert parse_spec({"landmarks": [3, 6, 12]}).landmarks == (3.0, 6.0, 12.0)


@pytest.mark.parametrize(
    "text, needle",
    [
        ('[data]\nlines = ["1L", "3L"]', "'3L'"),
        ("[data]\nyears = [2018, 2003]", "[data] years"),
        ('[data]\nexclude_placebo = "yes"', "must be true or false"),
        ("[sampler]\ntarget_accept = 1.0", "target_accept must be in [0.5, 1)"),
        ('[sampler]\nadaptation = "dense"', "adaptation"),
        ("[thresholds]\nhr = [0.65, 1.2]", "hr: each hazard ratio must be in (0, 1), got 1.2"),
        ("data = 3", "[data] must be a table"),
    ],
)
def test_bad_values(text, needle):
    assert any(needle in p for p in problems_of(text))


def test_invalid_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[model]\nlikelihood = "logit-binomial\n')
    with pytest.raises(SpecError, match="not valid TOML") as info:
        load_spec(path)
    assert str(info.value).startswith(str(path))


# --- replace and hash --------------------------------------------------------


def test_replace_dotted_and_top_level():
    spec = load_spec("default")
    new = spec.replace(**{"sampler.draws": 500, "data.derive_from_median": False}, landmarks=(6.0,))
    assert (new.sampler.draws, new.data.derive_from_median, new.landmarks) == (500, False, (6.0,))
    assert new.sampler.tune == spec.sampler.tune and new.model == spec.model
    assert spec.sampler.draws == 2000  # frozen: the original is untouched
    assert new.text == ""  # the TOML no longer describes the spec
    assert new.hash != spec.hash
    assert (
        new.replace(
            **{"sampler.draws": 2000, "data.derive_from_median": True}, landmarks=(3.0, 6.0)
        )
        == spec
    )


def test_replace_validates():
    spec = load_spec("default")
    with pytest.raises(SpecError, match="chains must be >= 1"):
        spec.replace(**{"sampler.chains": 0})
    with pytest.raises(SpecError, match="unknown covariate 'histology'"):
        spec.replace(**{"model.covariates": ("line", "histology")})


def test_hash_ignores_formatting_and_comments(tmp_path):
    original = load_spec("default")
    d = original.to_dict()

    def prior(p):
        return (
            "{"
            + ", ".join(f"{k} = {v!r}" if k != "dist" else f'dist = "{v}"' for k, v in p.items())
            + "}"
        )  # noqa: E731

    text = f"""
        # the same analysis, written differently: key order, spacing, int vs float, comments
        landmarks = [3.0, 6.0]   # months
        name = "default"
        description = "{d["description"]}"
        [sampler]
        seed = {d["sampler"]["seed"]}
        chains=4
        tune = 1000
        draws = 2_000
        target_accept = 0.90
        [priors]
        tau = {prior(d["priors"]["tau"])}
        beta = {prior(d["priors"]["beta"])}
        alpha = {{ sigma = 2, dist = "Normal", mu = 0 }}
        [random_effects]
        tau_by = "line"
        [model]
        covariates = ["line", "nrt", "line:nrt", "uterine"]
        likelihood = 'survival'
        [data]
        uterine_missing = "latent"
    """
    path = tmp_path / "reformatted.toml"
    path.write_text(text)
    again = load_spec(path)
    assert again == original
    assert again.hash == original.hash
    assert again.text != original.text
    assert original.replace(**{"sampler.seed": 1}).hash != original.hash
    assert len(original.hash) == 64 and original.hash == load_spec("default").hash


# --- data the spec asks for ----------------------------------------------------


def test_covariate_the_data_cannot_inform(trials):
    from lmsbayes.model.prepare import prepare_data

    spec = parse_spec(
        {"model": {"covariates": ["line"]}, "data": {"lines": ["1L"]}}, source="first-line"
    )
    with pytest.raises(SpecError) as info:
        prepare_data(spec, trials)
    assert len(info.value.problems) == 1
    msg = str(info.value)
    assert "\n" not in msg
    assert "'line'" in msg and "does not vary" in msg


def test_filter_leaving_no_observation(trials):
    from lmsbayes.model.prepare import prepare_data

    spec = parse_spec({"data": {"years": [1990, 1995]}})
    with pytest.raises(SpecError, match="no observation remains"):
        prepare_data(spec, trials)


def test_structural_and_semantic_problems_are_reported_together():
    from lmsbayes.spec import SpecError, parse_spec

    with pytest.raises(SpecError) as info:
        parse_spec(
            {
                "model": {"likelyhood": "x", "covariates": ["line", "nrtt"]},
                "sampler": {"draws": "many"},
                "random_effects": {"tau_by": "site"},
            }
        )
    msg = str(info.value)
    assert "did you mean 'likelihood'" in msg  # unknown key
    assert "draws must be an integer, got 'many'" in msg  # wrong type
    assert "unknown covariate 'nrtt'" in msg  # semantic, reported in the same error
    assert "tau_by must be 'none' or 'line', got 'site'" in msg
    assert len(info.value.problems) == 4

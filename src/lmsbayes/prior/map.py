"""Meta-analytic-predictive (MAP) priors.

A beta mixture fitted to the predictive distribution of a new trial's rate.

From a fit, the mixture is fitted to the predictive density itself
(:class:`~lmsbayes.prior.density.PredictiveDensity` over the fit's global
points, :func:`~lmsbayes.prior.em.fit_mixture_to_density`): no new-trial
effect is sampled and nothing in the fit of the mixture is random, so the
prior, its ESS and every OC built on it are functions of the global points
alone. From bare draws (an array), it is fitted to the draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmsbayes.errors import OptionError
from lmsbayes.prior.density import PredictiveDensity
from lmsbayes.prior.em import fit_mixture, fit_mixture_to_density, mixture_fit_diagnostic
from lmsbayes.prior.mixture import BetaMixture

__all__ = ["map_prior"]


def map_prior(
    draws: Any,
    setting: Any = None,
    landmark: float | None = None,
    *,
    max_components: int = 4,
    criterion: str = "kl",
    provenance: Mapping[str, Any] | None = None,
    rng: Any = None,
    target: Any = None,
) -> BetaMixture:
    """Meta-analytic-predictive (MAP) prior of a new trial's rate.

    Parameters
    ----------
    draws : lmsbayes Fit, PredictiveDensity, array_like or xarray.DataArray
        A fitted model: then ``setting`` and ``landmark`` select the new
        trial, the mixture is fitted to its predictive density integrated
        over the fit's global points (:func:`lmsbayes.predict.new_trial_conditionals`,
        :func:`fit_mixture_to_density`), and the provenance records the
        fit's spec, data hash, setting and landmark. A
        :class:`PredictiveDensity` is fitted as it is. Draws of the rate
        (``chain`` and ``draw`` dims are flattened) are fitted by
        :func:`fit_mixture`.
    setting : lmsbayes.predict.Setting, optional
        With a fit: the new trial's setting; may be omitted for a model
        without covariates (a plain binomial table).
    landmark : float, optional
        Months; required with a fit that has landmarks (not for a binomial table).
    max_components, criterion
        Passed to :func:`fit_mixture_to_density` (``max_components``) or
        :func:`fit_mixture`.
    provenance : mapping, optional
        Where the draws came from (data hash, spec, seed, ...); kept on the
        prior together with the fit record and the draws' summary, and
        written to JSON.
    rng : ignored
        Kept for compatibility: the fit is deterministic.
    target : lmsbayes.targets.Target, optional
        With a fit: what the prior is for (a new arm of a named regimen at a
        year: a control arm's MAP prior; a new regimen: a design prior). The
        provenance records it and the included arms of the regimen it rests on.
        A target is answered from the predictive draws (the closed-form
        conditionals know no regimen or year).

    Returns
    -------
    BetaMixture
        ``provenance["fit"]`` records the fit: every ``k`` tried, the chosen
        one and ``problems`` (a list, empty when the fit is sound). A fit
        problem is reported there, never as a warning.
    """
    del rng
    # a class attribute: hasattr on the instance would build the fit's DataTree
    if hasattr(type(draws), "posterior") and hasattr(draws, "spec"):
        # a fitted model: imported here so that prior.py stays free of the modelling stack
        from lmsbayes.predict import Setting, new_trial_conditionals, predict

        fit = draws
        has_landmarks = bool(
            fit.data.family.reported_landmarks(fit.spec.landmarks, fit.data.landmarks)
        )
        if setting is None:
            if fit.data.covariates or fit.data.table == "lms":
                raise OptionError(
                    "map_prior(fit, setting, landmark): this model has covariates; give the "
                    "setting of the new trial, e.g. Setting('2L+', 'R-T', 0.5)"
                )
            setting = Setting()
        if has_landmarks and landmark is None:
            raise OptionError(
                "map_prior(fit, setting, landmark): give the landmark (months) of the rate"
            )
        try:
            # the closed-form conditionals know no target, group effect, drift or age discount
            m = fit.model
            structured = bool(m.grouped or m.drift or m.discounted)
            cond = (
                None
                if target is not None or structured
                else new_trial_conditionals(fit, setting, landmark if has_landmarks else None)
            )
        except NotImplementedError:
            cond = None  # no closed-form conditional: the predictive draws stand in
        pred = None
        if cond is None:
            pred = predict(
                fit, [setting], [float(landmark)] if has_landmarks else None, target=target
            )
            sel = {"setting": 0, **({"landmark": 0} if has_landmarks else {})}
            draws = pred["rate"].sel(quantity="predictive").isel(sel, drop=True)
            draws.name = "p_new"
        else:
            draws = PredictiveDensity(
                cond["loc"], cond["scale"], cond["weights"], cond["link"], cond["df"]
            )
        values = {
            k: (float(v) if isinstance(v, (int, float)) else v) for k, v in setting.values().items()
        }
        if setting.case_mix:
            # the line's case mix (classes and sites as in its included arms), not the R-T default
            # of Setting
            described = {"line": setting.line, "case_mix": True}
        elif setting.line is not None:
            described = {
                "line": setting.line,
                "treatment_class": setting.treatment_class,
                "uterine": float(setting.uterine),
            }
        else:
            described = values
        provenance = {
            "source": "lmsbayes predictive distribution of a new trial's rate",
            "spec_name": fit.spec.name,
            "spec_hash": fit.spec.hash,
            "data_sha256": fit.data.data_sha256,
            "seed": int(fit.spec.sampler.seed),
            "engine": fit.engine,
            "setting": described,
            **({"landmark_months": float(landmark)} if has_landmarks else {}),
            **dict(provenance or {}),
        }
        if target is not None:
            from lmsbayes.targets import rests_on

            provenance["target"] = str(pred["target"].values[0])
            arms = rests_on(fit, target, setting.line)
            if target.kind == "new_arm":
                provenance["regimen_arms"] = arms
    prov = dict(provenance or {})
    if isinstance(draws, PredictiveDensity):
        mix = fit_mixture_to_density(draws, max_components=max_components)
        prov["fit"] = dict(mix.provenance["fit"])
        prov.setdefault(
            "target", "predictive density of a new trial's rate, integrated over the global points"
        )
        return BetaMixture(weights=mix.weights, a=mix.a, b=mix.b, provenance=prov)
    mix = fit_mixture(draws, max_components=max_components, criterion=criterion)
    diag = mixture_fit_diagnostic(mix, draws)
    prov["fit"] = {**mix.provenance["fit"], "ks_distance": diag.attrs["ks_distance"]}
    if hasattr(draws, "dims") and getattr(draws, "name", None) is not None:
        prov.setdefault("draws_name", str(draws.name))
    return BetaMixture(weights=mix.weights, a=mix.a, b=mix.b, provenance=prov)

"""Robustification: a weakly informative component added to a prior against prior-data conflict."""

from __future__ import annotations

import numpy as np

from lmsbayes.errors import OptionError
from lmsbayes.prior.mixture import BetaMixture

__all__ = ["is_robust", "prior_kind", "robust_component", "robustify"]


def robust_component(
    mean: float = 0.5, n: float = 1.0, *, bounded: bool = False
) -> tuple[float, float]:
    """Shape parameters ``(a, b)`` of the robust (weakly informative) component.

    Parameters
    ----------
    mean : float, default 0.5
        Its mean, in (0, 1); set it to the null rate ``p0``.
    n : float, default 1
        RBesT's ``n``: the component is Beta(mean (n + 1), (1 - mean) (n + 1)).
        Ignored when ``bounded``.
    bounded : bool, default False
        Instead, the flattest beta with this mean whose density stays bounded:
        the smaller shape parameter is 1, i.e. Beta(1, (1 - mean) / mean) for
        ``mean <= 1/2`` and Beta(mean / (1 - mean), 1) above.  Then every
        shape is >= 1 and ELIR is defined (RBesT's component with
        ``mean != 1/2`` and ``n = 1`` has a or b < 1, where ELIR is not).
        At ``mean = 1/2`` both give the uniform Beta(1, 1).

    Returns
    -------
    tuple of float
    """
    if isinstance(mean, bool) or not 0.0 < mean < 1.0:
        raise OptionError(f"mean must lie in (0, 1), got mean={mean!r}")
    if bounded:
        if mean <= 0.5:
            return 1.0, (1.0 - mean) / mean
        return mean / (1.0 - mean), 1.0
    if not (np.isfinite(n) and n >= 0):
        raise OptionError(f"n must be finite and >= 0, got n={n!r}")
    m = float(n) + 1.0
    return mean * m, (1.0 - mean) * m


def is_robust(mix: BetaMixture) -> bool:
    """Whether ``mix`` already carries a robust component (:func:`robustify` made it)."""
    return bool(mix.provenance) and "robustify" in mix.provenance


def prior_kind(mix: BetaMixture) -> str:
    """What a prior is, in the words every command uses: 'robust MAP', 'MAP' or 'prior'.

    A prior made by :func:`lmsbayes.prior.map_prior` (or read from its JSON) records its source;
    :func:`robustify` records its step. Anything else is a plain 'prior'.
    """
    if is_robust(mix):
        return "robust MAP" if _is_map(mix) else "robust prior"
    return "MAP" if _is_map(mix) else "prior"


def _is_map(mix: BetaMixture) -> bool:
    prov = mix.provenance or {}
    source = str(prov.get("source", ""))
    return "predictive" in source or "spec_hash" in prov or "map" in str(prov.get("kind", ""))


def robustify(
    mix: BetaMixture,
    weight: float,
    mean: float | None = None,
    n: float = 1.0,
    *,
    bounded: bool = False,
) -> BetaMixture:
    """Add a vague component to a prior to protect against prior-data conflict.

    Follows RBesT's ``robustify`` for beta mixtures exactly: the robust
    component is Beta(mean * (n + 1), (1 - mean) * (n + 1)) with weight
    ``weight``, and the existing weights are scaled by ``1 - weight``.  With
    ``mean=0.5, n=1`` that is the uniform Beta(1, 1); RBesT uses
    ``n + 1`` rather than ``n`` so that the default is the uniform and not the
    strict unit-information Beta(1/2, 1/2) (``n=0`` gives that one).

    Parameters
    ----------
    mix : BetaMixture
        The informative (e.g. MAP) prior.
    weight : float
        Prior probability of the robust component, ``0 < weight < 1``.
    mean : float, optional
        Mean of the robust component.  Default: the mean of ``mix`` (the
        vague component centred where the MAP prior is, Schmidli et al. 2014),
        in every command and function of lmsbayes.  RBesT defaults to 0.5
        (give ``mean=0.5`` for its numbers) and recommends the null rate ``p0``.
    n : float, default 1
        Prior observations of the robust component (RBesT's ``n``), ``>= 0``.
    bounded : bool, default False
        Use the flattest beta with this mean whose shapes are both >= 1, so
        that ELIR is defined (:func:`robust_component`); ``n`` is then unused.

    Returns
    -------
    BetaMixture
        ``k + 1`` components, the robust one last; provenance records the step.

    References
    ----------
    Schmidli H, Gsteiger S, Roychoudhury S, O'Hagan A, Spiegelhalter D,
    Neuenschwander B (2014). Robust meta-analytic-predictive priors in
    clinical trials with historical control information. Biometrics
    70(4):1023-1032.
    """
    if not isinstance(mix, BetaMixture):
        raise OptionError(f"mix must be a BetaMixture, got {type(mix).__name__}")
    if not 0.0 < weight < 1.0:
        raise OptionError(f"weight must lie in (0, 1), got weight={weight!r}")
    if is_robust(mix):
        done = mix.provenance["robustify"]
        raise OptionError(
            f"this prior is already robust (weight {done.get('weight')} on a vague component "
            f"with mean {done.get('mean')}); robustify the MAP prior, never a robust one twice"
        )
    if mean is None:
        mean = mix.mean()
    ra, rb = robust_component(mean, n, bounded=bounded)
    prov = dict(mix.provenance or {})
    prov["robustify"] = {
        "weight": float(weight),
        "mean": float(mean),
        "n": float(n),
        "bounded": bool(bounded),
        "a": ra,
        "b": rb,
    }
    return BetaMixture(
        weights=np.append(mix.weights * (1.0 - weight), weight),
        a=np.append(mix.a, ra),
        b=np.append(mix.b, rb),
        provenance=prov,
    )

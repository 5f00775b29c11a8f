"""Prior-data conflict: how much of a (MAP) prior survives a trial's data.

After ``r`` progression-free patients out of ``n``, a mixture prior's
posterior is again a mixture whose weights are the prior weights times each
component's beta-binomial marginal likelihood of ``r``.  A robust component
that gains weight says the data disagree with the informative part; the
prior-predictive tail probability of ``r`` says how surprising ``r`` is
under the prior as a whole (Box 1980).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmsbayes.errors import OptionError
from lmsbayes.prior.checks import check_count
from lmsbayes.prior.ess import ess
from lmsbayes.prior.mixture import BetaMixture

__all__ = ["ConflictReport", "conflict"]


def _ess_with_method(mix: BetaMixture) -> tuple[float, str]:
    # ELIR is the ESS to report (predictively consistent); it is undefined when
    # a component has a < 1 or b < 1, and then the moment ESS stands in
    if np.all(mix.a >= 1) and np.all(mix.b >= 1):
        return ess(mix, "elir"), "elir"
    return ess(mix, "moment"), "moment"


@dataclass(frozen=True)
class ConflictReport:
    """Result of :func:`conflict` (and :meth:`BetaMixture.conflict`).

    Attributes
    ----------
    r, n : int
        The observed count and sample size.
    prior, posterior : BetaMixture
    components : pandas.DataFrame
        One row per component: prior ``a``, ``b``, ``prior_weight``,
        ``posterior_weight`` and the posterior ``a_post``, ``b_post``.  The
        row ``robust`` is the component added by :func:`robustify` when the
        prior's provenance records one (it is the last).
    p_lower, p_upper : float
        Prior-predictive tail probabilities ``P(Y <= r)`` and ``P(Y >= r)``
        of the count ``Y`` among ``n`` new patients.
    p_two_sided : float
        ``min(1, 2 min(p_lower, p_upper))``.
    p_box : float
        Box's (1980) prior-predictive p-value: the probability of a count no
        more likely than ``r``, ``sum_y P(y) 1[P(y) <= P(r)]``.
    ess_prior, ess_posterior : float
        Effective sample sizes; ``ess_method`` says which (``"elir"`` when
        defined for both, else ``"moment"``).
    p_box_informative : float or None
        With a robust component: Box's p-value under the informative part
        alone (the other components, reweighted).  The robust component makes
        almost any count plausible under the whole prior, so the conflict
        with the historical data shows here.
    """

    r: int
    n: int
    prior: BetaMixture
    posterior: BetaMixture
    components: pd.DataFrame
    p_lower: float
    p_upper: float
    p_two_sided: float
    p_box: float
    ess_prior: float
    ess_posterior: float
    ess_method: str
    p_box_informative: float | None = None

    def to_series(self) -> pd.Series:
        """The scalar results as one row (for a table of several trials)."""
        return pd.Series(
            {
                "r": self.r,
                "n": self.n,
                "observed_rate": self.r / self.n,
                "prior_mean": self.prior.mean(),
                "posterior_mean": self.posterior.mean(),
                "p_lower": self.p_lower,
                "p_upper": self.p_upper,
                "p_two_sided": self.p_two_sided,
                "p_box": self.p_box,
                "ess_prior": self.ess_prior,
                "ess_posterior": self.ess_posterior,
                "ess_method": self.ess_method,
                "p_box_informative": self.p_box_informative,
            },
            name="conflict",
        )

    def __str__(self) -> str:
        comp = self.components.copy()
        for col in ("prior_weight", "posterior_weight"):
            comp[col] = comp[col].map(lambda v: f"{v:.3f}")
        for col in ("a", "b", "a_post", "b_post"):
            comp[col] = comp[col].map(lambda v: f"{v:.4g}")
        lines = [
            f"Prior-data conflict after {self.r} of {self.n} progression-free "
            f"(observed rate {self.r / self.n:.3f}; prior mean {self.prior.mean():.3f}, "
            f"posterior mean {self.posterior.mean():.3f})",
            "",
            "Mixture weights, prior -> posterior (how much of each component survives):",
            comp.to_string(),
            "",
            f"Prior-predictive probability of a count as low or lower:  P(Y <= {self.r}) = "
            f"{self.p_lower:.4f}",
            f"Prior-predictive probability of a count as high or higher: P(Y >= {self.r}) = "
            f"{self.p_upper:.4f}",
            f"Two-sided tail probability {self.p_two_sided:.4f}; Box's p-value {self.p_box:.4f}"
            + ("  <- conflict (< 0.05)" if self.p_box < 0.05 else ""),
            f"ESS ({self.ess_method}): prior {self.ess_prior:.1f}, posterior "
            f"{self.ess_posterior:.1f} (prior + n = {self.ess_prior + self.n:.1f} if the data "
            "agreed with the prior on average)",
        ]
        if self.p_box_informative is not None:
            lines.append(
                f"Box's p-value under the informative part alone (without the robust component): "
                f"{self.p_box_informative:.4f}"
                + ("  <- conflict (< 0.05)" if self.p_box_informative < 0.05 else "")
            )
        if "robust" in self.components.index:
            w0, w1 = self.components.loc["robust", ["prior_weight", "posterior_weight"]]
            lines.append(
                f"Robust component weight {w0:.3f} -> {w1:.3f}"
                + ("  (the data moved weight to it)" if w1 > w0 else "")
            )
        return "\n".join(lines)


def _box(pmf: np.ndarray, r: int) -> float:
    # a relative slack so that counts exactly as likely as r are not lost to rounding
    return float(min(1.0, pmf[pmf <= pmf[r] * (1 + 1e-9)].sum()))


def conflict(prior: BetaMixture, r: int, n: int) -> ConflictReport:
    """Prior-data conflict of ``prior`` with ``r`` progression-free patients out of ``n``.

    Parameters
    ----------
    prior : BetaMixture
    r, n : int
        Observed count and sample size, ``0 <= r <= n``, ``n >= 1``.

    Returns
    -------
    ConflictReport

    Notes
    -----
    Posterior weights are the conjugate update
    ``w_k' ∝ w_k B(a_k + r, b_k + n - r) / B(a_k, b_k)``
    (:meth:`BetaMixture.posterior`); the tail probabilities use the
    beta-binomial mixture predictive (:meth:`BetaMixture.predictive_pmf`).
    """
    if not isinstance(prior, BetaMixture):
        raise OptionError(f"prior must be a BetaMixture, got {type(prior).__name__}")
    n = check_count("n", n)
    if n < 1:
        raise OptionError(f"n must be >= 1 (patients in the trial), got {n!r}")
    r = check_count("r", r, upper=n)
    post = prior.posterior(r, n)
    pmf = prior.predictive_pmf(n)
    p_lower = float(min(1.0, pmf[: r + 1].sum()))
    p_upper = float(min(1.0, pmf[r:].sum()))
    p_box = _box(pmf, r)
    names = [f"comp{k + 1}" for k in range(prior.n_components)]
    p_inf = None
    if prior.provenance and "robustify" in prior.provenance and prior.n_components > 1:
        names[-1] = "robust"
        w = prior.weights[:-1]
        if w.sum() > 0:
            informative = BetaMixture(weights=w / w.sum(), a=prior.a[:-1], b=prior.b[:-1])
            p_inf = _box(informative.predictive_pmf(n), r)
    comps = pd.DataFrame(
        {
            "a": prior.a,
            "b": prior.b,
            "prior_weight": prior.weights,
            "posterior_weight": post.weights,
            "a_post": post.a,
            "b_post": post.b,
        },
        index=pd.Index(names, name="component"),
    )
    e0, m0 = _ess_with_method(prior)
    e1, m1 = _ess_with_method(post)
    if m0 != m1:  # report both on one scale
        e0, e1, m0 = ess(prior, "moment"), ess(post, "moment"), "moment"
    return ConflictReport(
        r=r,
        n=n,
        prior=prior,
        posterior=post,
        components=comps,
        p_lower=p_lower,
        p_upper=p_upper,
        p_two_sided=min(1.0, 2 * min(p_lower, p_upper)),
        p_box=p_box,
        ess_prior=float(e0),
        ess_posterior=float(e1),
        ess_method=m0,
        p_box_informative=p_inf,
    )

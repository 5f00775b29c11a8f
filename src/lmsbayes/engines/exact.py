"""The exact engine: deterministic integration instead of sampling.

For the model of lmsbayes.model, with global parameters theta (intercepts,
covariate effects, log shape, log tau per stratum: 2 to about 12 of them)
and per-arm latent quantities (random effects z, and a latent uterine
fraction u where unknown):

1. **Arm integrals.** Each arm's latent quantities are integrated out given
   theta. The random effect: in closed form where the likelihood is
   Gaussian in it (logit-normal, survival), else by adaptive Gauss-Hermite
   quadrature centred at the mode with the curvature's scale (binomial
   families). A latent uterine fraction: Gauss-Legendre nodes on [0, 1]
   (its Beta(1, 1) prior), the random effect integrated at each node. This
   gives log p(theta | y) up to a constant.
2. **Marginal posterior of theta.** Its mode and Hessian (Laplace). The
   proposal is a grid over log tau (one or two strata: tau is often poorly
   identified, a funnel) with, at each tau, the Gaussian conditional of the
   other parameters (Student-t); or, with more tau coordinates, one
   multivariate Student-t. Draws from the proposal are corrected to the
   exact marginal by importance weights (k-hat, importance ESS and the
   grid's edge mass are reported). The proposal's points come from a fixed
   rule, not a generator (lmsbayes.engines.rules): a shifted rank-1 lattice,
   or, with one tau and at most one other global, a tensor grid that needs no
   proposal at all. Summaries integrate over that rule (lmsbayes.integrated),
   so they are the same at every seed; the rule is resampled to equal-weight
   draws for the arm-level draws and the DataTree.
3. **Arm-level draws** of u and z from their exact conditionals given each
   draw of theta: z in closed form (Gaussian likelihoods) or by rejection
   from tangent lines of its log-concave density (binomial families, exact);
   u of binomial families by inverse CDF on a grid.

Everything is numpy/scipy: no compilation, milliseconds per fit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from lmsbayes.engines import rules
from lmsbayes.engines.base import (
    EDGE_MASS_MAX,
    ESS_MIN,
    Diagnostics,
    EngineResult,
    FitSettings,
    Progress,
)
from lmsbayes.engines.psis import importance_ess, psis
from lmsbayes.groups import Group
from lmsbayes.model.definition import Model
from lmsbayes.model.families import CURVE_ARRAYS
from lmsbayes.model.families import NUMPY_OPS as OPS
from lmsbayes.model.inputs import ModelData

__all__ = [
    "ENGINE",
    "ExactDiagnostics",
    "ExactEngine",
    "ExactResult",
    "Integrator",
    "Layout",
    "fit_exact",
    "posterior_mode",
    "supports",
]

_GRID_MAX_TAU = 2  # grid over log tau for at most this many tau coordinates
# a tensor rule (no importance sampling) with one tau and at most this many other globals
_TENSOR_MAX_OTHERS = 1
# above this many arms the rules are coarser (each point is a pass over every arm)
_LARGE_ARMS = 2000
# k-hat above which a second importance round is drawn; below 0.7 a combined sample is usable
_SECOND_ROUND_KHAT = 0.3
_KHAT_USABLE = 0.7
# defensive component of the Student-t proposal: its share of the draws, and its log-tau sd factor
_DEFENSIVE_WEIGHT = 0.25
_DEFENSIVE_TAU_SCALE = 2.0
_FD_STEP = 1e-4


def supports(spec) -> str | None:
    """None if the exact engine fits this spec, else the reason it cannot."""
    from lmsbayes.model.families import get_family
    from lmsbayes.model.structure import group_column

    # a binomial table has no landmarks: one effect per arm and group, whatever the family
    family = get_family(spec.model.likelihood, spec.model.curve)
    if group_column(spec) and family.per_landmark and spec.landmarks:
        return (
            "group effects of a per-landmark family (one per group and landmark) are fitted by NUTS"
        )
    return None


# ============================================================================ layout


class Layout:
    """The global parameters as one unconstrained vector theta, and back."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.blocks = []
        names = []
        k = 0
        coords = model.coords
        for p in model.params:
            self.blocks.append((p, slice(k, k + p.size)))
            k += p.size
            for idx in np.ndindex(*p.shape) if p.shape else [()]:
                label = ", ".join(str(coords[d][i]) for d, i in zip(p.dims, idx)) if p.dims else ""
                prefix = {"log": "log ", "ordered": ""}.get(p.transform, "")
                names.append(f"{prefix}{p.name}[{label}]" if label else f"{prefix}{p.name}")
        self.size = k
        self.names = tuple(names)
        # heterogeneity scales: the proposal's grid (or defensive component) is over their logs
        self.tau_coords = np.concatenate(
            [
                np.arange(s.start, s.stop)
                for p, s in self.blocks
                if p.name in ("tau", "group_tau", "drift_scale", "discount")
            ]
        )

    def unpack(self, theta: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Constrained values (batch, *shape) and the log Jacobian (batch,)."""
        theta = np.atleast_2d(theta)
        B = theta.shape[0]
        out, logjac = {}, np.zeros(B)
        for p, s in self.blocks:
            x = theta[:, s]
            if p.transform == "log":
                logjac += x.sum(-1)
                x = np.exp(x)
            elif p.transform == "ordered":
                logjac += x[:, 1:].sum(-1)
                x = np.cumsum(np.concatenate([x[:, :1], np.exp(x[:, 1:])], axis=1), axis=1)
            out[p.name] = x.reshape((B, *p.shape))
        return out, logjac

    def pack(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Inverse of :meth:`unpack` for one point."""
        theta = np.zeros(self.size)
        for p, s in self.blocks:
            x = np.asarray(values[p.name], float).ravel()
            if p.transform == "log":
                x = np.log(x)
            elif p.transform == "ordered":
                x = np.concatenate([x[:1], np.log(np.diff(x))])
            theta[s] = x
        return theta

    def initial(self) -> np.ndarray:
        """A starting point: alpha at the observations' mean, effects 0, tau 0.3, shape 1.5."""
        m = self.model
        vals = {}
        for p, _ in self.blocks:
            if p.name == "alpha":
                base = _alpha_start(m)
                vals["alpha"] = (
                    np.full(p.shape, base)
                    if p.transform != "ordered"
                    else base + np.linspace(0, 0.7, p.shape[0])
                )
            elif p.name == "tau":
                vals["tau"] = np.full(p.shape, 0.3)
            elif p.name == "shape":
                vals["shape"] = np.full(p.shape, 1.5)
            elif p.transform == "log":  # other scales (group, drift, discount)
                vals[p.name] = np.full(p.shape, 0.2)
            else:
                vals[p.name] = np.zeros(p.shape)
        return self.pack(vals)


def _alpha_start(m: Model) -> float:
    return m.family.alpha_start(m.data.obs)


# ============================================================================ arm integrals


@dataclass
class _Part:
    """Arms integrated together: a plain model (no latent fraction) over some arms."""

    model: Model
    arm_of: np.ndarray  # position in the full data of each (virtual) arm
    order: np.ndarray  # terms sorted by component
    starts: np.ndarray
    present: np.ndarray  # components with terms
    n_nodes_u: int = 1  # Gauss-Legendre nodes per latent arm (1: no latent fraction)
    log_wu: np.ndarray | None = None
    single: bool = (
        False  # one term per component, in component order: a component's sum is its term
    )
    const: np.ndarray | None = None  # the components' constants (None: all zero)
    counts: np.ndarray | None = None  # terms per component
    first: np.ndarray | None = None  # position of each component's first term in ``order``
    gauss: _Gauss | None = None  # Gaussian likelihoods: the log-likelihood's coefficients in eta
    kernel: object = None  # binomial likelihoods: terms and their derivatives in the random effect


def _make_part(
    spec, data: ModelData, arm_of: np.ndarray, n_nodes_u: int = 1, log_wu=None, model=None
) -> _Part:
    model = Model(spec, data) if model is None else model
    order = np.argsort(model.term_comp, kind="stable")
    comp_sorted = model.term_comp[order]
    present, starts = np.unique(comp_sorted, return_index=True)
    counts = np.bincount(model.term_comp, minlength=model.n_comp)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    const = np.asarray(model.comp_const, float)
    part = _Part(
        model,
        arm_of,
        order,
        starts,
        present,
        n_nodes_u,
        log_wu,
        single=bool(
            model.term_comp.size == model.n_comp
            and np.array_equal(model.term_comp, np.arange(model.n_comp))
        ),
        const=const if np.any(const != 0) else None,
        counts=counts,
        first=first,
    )
    if model.gaussian:
        part.gauss = _gauss_coefficients(part)
    else:
        part.kernel = model.family.exact_kernel(model)
    return part


class _PartData:
    """What the arm integrals read of a part's data (arrays only: no pandas frames to re-index)."""

    def __init__(self, m: Model, pos: np.ndarray, X: np.ndarray | None = None) -> None:
        d = m.data
        self.family, self.landmarks, self.t_ref = d.family, d.landmarks, d.t_ref
        self.shape_groups, self.uterine_centre = d.shape_groups, d.uterine_centre
        self.n_arms = int(pos.size)
        # the model's design (with the drift's basis columns where it has one)
        self.X = m.arrays["X"][pos] if X is None else np.asarray(X, float)
        self.Xu = m.arrays["Xu"][pos] if X is None else np.zeros_like(self.X)
        self.latent = (
            np.flatnonzero(np.isin(pos, d.latent)) if X is None else np.zeros(0, dtype=np.int64)
        )
        self.stratum_idx = np.asarray(d.stratum_idx)[pos]
        self.shape_idx = (
            np.asarray(d.shape_idx)[pos] if len(d.shape_idx) else np.asarray(d.shape_idx)
        )


def _runs(counts: np.ndarray, pos: np.ndarray):
    """Rows of the contiguous runs of ``pos``, and each row's copy.

    The runs have ``counts[i]`` rows each, in order.
    """
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n_new = counts[pos]
    copy = np.repeat(np.arange(pos.size), n_new)
    new_start = np.concatenate([[0], np.cumsum(n_new)[:-1]]).astype(np.int64)
    rows = starts[pos][copy] + np.arange(copy.size) - new_start[copy]
    return rows, copy, starts, new_start


# survival arrays with one entry per pair term (Model.arrays), not per observation
_TERM_ARRAYS = ("first", "second", "precision", "diagonal")
# arrays with one entry per arm (lmsbayes.model.structure)
_ARM_ARRAYS = ("age", "group_idx")


def _take_model(m: Model, pos, X: np.ndarray | None = None) -> Model:
    """The model of the arms at ``pos`` (repeats allowed; ``X`` replaces their design rows).

    What ``Model(spec, data.take(pos, X=X))`` gives the integrals, from the
    model's arrays without pandas (tested equal): a part of an integrator is
    built at every fit, and re-indexing the data frames took most of that.
    """
    import copy as _copy

    d = m.data
    pos = np.asarray(pos, np.int64)
    a = m.arrays
    kz = m.Kz
    rows, row_copy, starts, new_start = _runs(np.bincount(a["arm_idx"], minlength=d.n_arms), pos)
    sub = _copy.copy(m)
    sub.data = _PartData(m, pos, X)
    arrays = {}
    for k, v in a.items():
        if k in ("X", "Xu"):
            arrays[k] = getattr(sub.data, k)
        elif k == "stratum_idx":
            arrays[k] = sub.data.stratum_idx
        elif k in _ARM_ARRAYS:
            arrays[k] = v[pos]
        elif k not in _TERM_ARRAYS and k not in CURVE_ARRAYS:
            arrays[k] = v[rows]  # one per observation
    arrays["arm_idx"] = row_copy
    sub.arm_idx = row_copy
    sub.obs_comp = row_copy * kz + (m.obs_comp[rows] - pos[row_copy] * kz)
    sub.n_comp = int(pos.size) * kz
    if m.family.correlated_terms:  # terms are precision entries: re-index them too
        n_pairs = len(a["first"])
        trows, tcopy, _, _ = _runs(np.bincount(m.term_comp[:n_pairs], minlength=d.n_arms), pos)
        shift = new_start[tcopy] - starts[pos[tcopy]]
        for k in _TERM_ARRAYS:
            if k in a:
                arrays[k] = a[k][trows] + (shift if k in ("first", "second") else 0)
        sub.term_comp = tcopy
        sub.gaussian = m.family.gaussian
        if "curve_arm" in a:  # curve arms' groups (their own rows, after the pair terms)
            crows, ccopy, _, _ = _runs(np.bincount(a["curve_arm"], minlength=d.n_arms), pos)
            if ccopy.size:
                for k in CURVE_ARRAYS:
                    arrays[k] = a[k][crows]
                arrays["curve_arm"] = ccopy
                sub.term_comp = np.concatenate([tcopy, ccopy * kz])
                sub.gaussian = False
        sub.comp_const = np.asarray(m.comp_const, float).reshape(d.n_arms, kz)[pos].ravel()
    else:
        sub.term_comp = sub.obs_comp
        sub.comp_const = np.zeros(sub.n_comp)
    sub.arrays = arrays
    return sub


def _comp_sum(part: _Part, terms: np.ndarray, const: bool = True) -> np.ndarray:
    """Sums of terms (..., term) by component (..., n_comp), plus the components' constants."""
    if part.single:
        out = terms
    else:
        out = np.zeros(terms.shape[:-1] + (part.model.n_comp,))
        if part.present.size:
            out[..., part.present] = np.add.reduceat(terms[..., part.order], part.starts, axis=-1)
    return out + part.const if (const and part.const is not None) else out


def _base(m: Model, c, X, Xu=None, du=None) -> np.ndarray:
    """The base predictor (..., arm, K) by matrix products (Model.base_predictor_numpy)."""
    return m.base_predictor_numpy(c, X, Xu, du)


# --- Gaussian likelihoods: closed form from the log-likelihood's coefficients ----------------


@dataclass
class _Gauss:
    """A Gaussian likelihood's component log-likelihoods as polynomials in eta (and the shape k).

    ll_c(eta) = e0_c(k) + e1_c(k) eta + e2_c(k) eta^2 exactly (the likelihood
    is Gaussian in the linear predictor), with e_m(k) = sum_p E[m, p, c] k^p
    over ``powers`` (survival: k^-2 .. k^2, from products of rate residuals,
    linear in k, and median residuals, linear in 1/k; else the constant).
    The coefficients are data constants, read off the definition
    (Model.loglik_terms) at probe points once per model and verified at
    random points; an arm integral is then a few operations per draw.
    """

    powers: np.ndarray  # (P,): -2 .. 2, or 0
    # a log k basis function too: medians without a CI have sd se / k, whose normalising
    # constant adds log k to e0 (Model.se_by_shape)
    log_k: bool
    E: np.ndarray  # (P, 3 * n_comp): [e0 | e1 | e2] per power
    comp_group: np.ndarray | None  # shape group of each component (None: no free shape)
    n_groups: int
    _by_group: list | None = None
    _const: tuple | None = None

    def coefficients(self, c) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """e0, e1, e2 (..., n_comp) at the draws' shapes (or constants)."""
        n = self.E.shape[1] // 3
        if self.comp_group is None:
            e = self.E[0]
        else:
            k = np.asarray(c["shape"], float)
            inv = 1.0 / k
            basis = [inv * inv, inv, np.ones_like(k), k, k * k] + (
                [np.log(k)] if self.log_k else []
            )
            kp = np.stack(basis, axis=-1)  # k ** powers (and log k), (..., G, P)
            if self.n_groups == 1:
                e = kp[..., 0, :] @ self.E
            else:
                if self._by_group is None:
                    self._by_group = [
                        self.E * np.tile(self.comp_group == g, 3) for g in range(self.n_groups)
                    ]
                e = sum(kp[..., g, :] @ Eg for g, Eg in enumerate(self._by_group))
        return e[..., :n], e[..., n : 2 * n], e[..., 2 * n :]

    def normal_form(self, c) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ll(eta) = C - q / 2 (eta - mu)^2 per component: C, mu, q (..., n_comp)."""
        if self.comp_group is None:
            if self._const is None:
                self._const = self._normal(*self.coefficients(c))
            return self._const
        return self._normal(*self.coefficients(c))

    @staticmethod
    def _normal(e0, e1, e2):
        q = -2.0 * e2
        mu = e1 / np.where(q > 0, q, 1.0)  # a component without observations: q = e1 = 0
        return e0 + 0.5 * e1 * mu, mu, q

    def log_integral(self, c, base, scale) -> np.ndarray:
        """log of the integral of exp(ll(base + scale z)) N(z; 0, 1) dz per component (..., n_comp).

        With ll = C - q / 2 (eta - mu)^2: C - (log(1 + q s^2) + q (base - mu)^2 / (1 + q s^2)) / 2,
        which in the coefficients (q = -2 e2, mu = e1 / q) is
        e0 - log(1 + q s^2) / 2 + (e1 (2 base + e1 s^2) + 2 e2 base^2) / (2 (1 + q s^2)):
        no division by q (a component without observations needs no guard) and about
        half the operations (this is most of a large table's log posterior).
        """
        e0, e1, e2 = self.coefficients(c)
        s2 = scale * scale
        den = 1.0 - 2.0 * e2 * s2  # 1 + q s^2
        num = e1 * (2.0 * base + e1 * s2) + 2.0 * e2 * (base * base)
        return e0 - 0.5 * np.log1p(den - 1.0) + 0.5 * num / den

    def log_integral_nodes(self, c, base, scale, mult) -> np.ndarray:
        """:meth:`log_integral` at sd ``scale * mult[j]`` for every j: (..., n_comp, node)."""
        C, mu, q = self.normal_form(c)
        r = (base - mu)[..., None]
        qs2 = (q * (scale * scale))[..., None] * (mult * mult)
        return C[..., None] - 0.5 * (np.log1p(qs2) + q[..., None] * (r * r) / (1.0 + qs2))

    def posterior(self, c, base, scale) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of each component's z given the data (normal)."""
        _, mu, q = self.normal_form(c)
        a = 1.0 + q * (scale * scale)
        return -scale * q * (base - mu) / a, 1.0 / np.sqrt(a)

    def quadratic(self, c, base, scale):
        """Coefficients of ll(z) = c0 + c1 z + c2 z^2 per component, from eta = base + scale z."""
        e0, e1, e2 = self.coefficients(c)
        c0 = e0 + base * (e1 + base * e2)
        c1 = scale * (e1 + 2.0 * e2 * base)
        c2 = scale * scale * e2
        return c0, c1, c2


def _gauss_coefficients(part: _Part) -> _Gauss | None:
    """The coefficients of :class:`_Gauss` for a part.

    None where its structure is not that one.
    """
    m = part.model
    d = m.data
    if m.K != m.Kz:
        return None
    surv = m.family.has_shape
    free = surv and any(p.name == "shape" for p in m.params)
    G = max(1, len(d.shape_groups), int(d.shape_idx.max()) + 1 if len(d.shape_idx) else 1)
    log_k = bool(free and m.se_by_shape)
    ks = (
        np.array([0.5, 0.7, 1.0, 1.4, 2.0] + ([3.0] if log_k else []))
        if free
        else np.array([float(m.spec.model.shape_value) if surv else 1.0])
    )
    powers = np.arange(-2, 3) if free else np.zeros(1)
    n_arms, K = d.n_arms, m.K

    def ll(eta, k):  # eta (P, arm, K) and shape k (P,) -> component log-likelihoods (P, n_comp)
        c = {"shape": np.repeat(np.asarray(k, float)[:, None], G, axis=1)} if surv else {}
        with np.errstate(all="ignore"):
            return _comp_sum(part, m.loglik_terms(OPS, eta, c))

    etas = np.tile([-1.0, 0.0, 1.0], ks.size)
    v = ll(np.broadcast_to(etas[:, None, None], (etas.size, n_arms, K)), np.repeat(ks, 3)).reshape(
        ks.size, 3, -1
    )
    e = np.concatenate(
        [v[:, 1], 0.5 * (v[:, 2] - v[:, 0]), 0.5 * (v[:, 2] + v[:, 0]) - v[:, 1]], axis=1
    )
    if free:
        B = ks[:, None] ** powers[None, :]
        E = np.linalg.solve(np.column_stack([B, np.log(ks)]) if log_k else B, e)
    else:
        E = e
    group = None
    if free:
        grp = np.asarray(d.shape_idx, np.int64) if len(d.shape_idx) else np.zeros(n_arms, np.int64)
        group = np.repeat(grp, m.Kz)
    out = _Gauss(powers=powers, log_k=log_k, E=E, comp_group=group, n_groups=G)
    # verify at random points: a likelihood not of this form keeps the generic path
    rng = np.random.default_rng(12345)
    eta = rng.normal(0.0, 2.0, (2, n_arms, K))
    kk = rng.uniform(0.3, 3.0, (2, G)) if free else np.full((2, G), ks[0])
    with np.errstate(all="ignore"):
        direct = _comp_sum(part, m.loglik_terms(OPS, eta, {"shape": kk} if surv else {}))
    e0, e1, e2 = out.coefficients({"shape": kk})
    x = eta.reshape(2, -1)
    recon = e0 + x * (e1 + x * e2)
    if not (
        np.all(np.isfinite(direct))
        and np.all(np.abs(recon - direct) <= 1e-9 * (1.0 + np.abs(direct)))
    ):
        return None
    return out


class Integrator:
    """log p(y | theta) with every arm's latent quantities integrated out, for batches of theta.

    Gaussian likelihoods: the random effect in closed form, and a latent
    fraction u in closed form too (the z-integrated log-likelihood is exactly
    quadratic in u, so its integral over [0, 1] is a difference of normal
    CDFs), evaluated at u = 0, 1/2, 1. Other likelihoods: adaptive
    Gauss-Hermite over z (centred at the mode found by Newton's method with
    analytic derivatives, scaled by the curvature there) inside
    Gauss-Legendre nodes over u.
    """

    def __init__(self, model: Model, nodes: int = 9, uterine_nodes: int = 12) -> None:
        self.model = model
        data = model.data
        spec = model.spec
        self.gaussian = model.gaussian
        # curve arms (lmsbayes.model.curve_arms) are not Gaussian in their effect: they form parts
        # of their own, integrated by quadrature, while the other arms keep the closed form
        curve_arms = np.unique(model.arrays["curve_arm"]) if "curve_arm" in model.arrays else []
        is_curve = np.isin(np.arange(data.n_arms), curve_arms)
        # a latent fraction in closed form (the z-integrated log-likelihood quadratic in u):
        # Gaussian likelihoods with normal effects; a Student-t's scale mixture is not
        # quadratic in u
        self.u_closed = bool(model.family.gaussian and not is_curve[data.latent].any())
        self.t_mix = None
        if model.student_t:  # z ~ t(nu) as a scale mixture of normals (lmsbayes.model.structure)
            from lmsbayes.model.structure import t_scale_mixture

            self.t_mix = t_scale_mixture(spec.random_effects.nu)
        self.x_gh, w = np.polynomial.hermite.hermgauss(nodes)
        self.log_w_gh = (
            np.log(w) + self.x_gh**2
        )  # e^{x^2} w: the integrand is not divided by the weight
        lat = data.latent
        regular = np.setdiff1d(np.arange(data.n_arms), lat)
        self.parts: list[_Part] = []
        self.whole = None
        if regular.size == data.n_arms and not is_curve.any():
            self.whole = _make_part(spec, data, regular, model=model)
            self.parts.append(self.whole)
        else:
            for arms in (regular[~is_curve[regular]], regular[is_curve[regular]]):
                if arms.size:
                    sub = _take_model(model, arms)
                    self.parts.append(_make_part(spec, None, arms, model=sub))
        if lat.size:
            if self.u_closed:
                u = np.array([0.0, 0.5, 1.0])
                log_wu = None
            else:
                xg, wg = np.polynomial.legendre.leggauss(uterine_nodes)
                u, log_wu = 0.5 * (xg + 1), np.log(0.5 * wg)
            self.u_nodes = u
            self.latent_part = self._latent_part(u, log_wu)
            self.parts.append(self.latent_part)
        # draws per chunk: arrays of at most ~2^15 numbers (256 kB), which stay in cache and are
        # recycled by the allocator (larger ones are mapped and page-faulted afresh at every
        # operation)
        width = max(
            max(p.model.n_comp, 0 if p.kernel is None else p.model.term_comp.size)
            for p in self.parts
        )
        self.chunk = int(min(1024, max(1, 2**15 // max(width, 1))))

    def _whole(self) -> _Part:
        """All arms in place (latent fractions given): the part of the arm-level draws."""
        if self.whole is None:
            self.whole = _make_part(
                self.model.spec,
                self.model.data,
                np.arange(self.model.data.n_arms),
                model=self.model,
            )
        return self.whole

    def _latent_part(self, u: np.ndarray, log_wu=None) -> _Part:
        d = self.model.data
        lat = d.latent
        Xd, Xud = self.model.arrays["X"], self.model.arrays["Xu"]
        X = np.concatenate([Xd[i] + (u[:, None] - d.uterine_centre) * Xud[i] for i in lat])
        pos = np.repeat(lat, u.size)
        return _make_part(
            self.model.spec, None, pos, u.size, log_wu, model=_take_model(self.model, pos, X)
        )

    # --- component log-likelihoods -------------------------------------------------

    @staticmethod
    def _comp_sum(part: _Part, terms: np.ndarray) -> np.ndarray:
        return _comp_sum(part, terms)

    def _ll_at(self, part: _Part, c, base, scale, z) -> np.ndarray:
        """Component log-likelihoods at random effects ``z`` (..., n_comp).

        The definition's terms.
        """
        m = part.model
        zz = z.reshape(z.shape[:-1] + (m.data.n_arms, m.Kz))
        eta = base + scale * zz
        return _comp_sum(part, m.loglik_terms(OPS, eta, c))

    def _shift(self, part: _Part, scale, z):
        """tau z of each term's component (..., term)."""
        s = scale * z
        return s if part.single else s[..., part.model.term_comp]

    def _newton(self, part: _Part, pre, scale, iters: int = 60, tol: float = 1e-7):
        """Mode and curvature of g(z) = ll(z) - z^2 / 2 per component (analytic derivatives).

        g is strictly concave (ll is concave in z for the binomial families
        and the prior adds -1 to the curvature), so Newton's method with
        bounded steps converges, quadratically near the mode: it stops once
        every step is below ``tol`` (the error is then of order tol^2).
        Returns the mode, the value, slope and curvature of g there.
        """
        kern = part.kernel
        z = (
            kern.start(lambda t: _comp_sum(part, t, const=False), pre, scale)
            if hasattr(kern, "start")
            else np.zeros(scale.shape)
        )
        s2 = scale * scale
        for _ in range(iters):
            d1, d2 = kern.derivs(pre, self._shift(part, scale, z))
            g1 = scale * _comp_sum(part, d1, const=False) - z
            g2 = s2 * _comp_sum(part, d2, const=False) - 1.0
            # np.clip costs several small-array operations: min and max directly
            step = np.minimum(np.maximum(g1 / g2, -3.0), 3.0)
            z -= step
            # also stops on NaN (an infinite log-likelihood)
            if not (step.max(initial=0.0) >= tol or -step.min(initial=0.0) >= tol):
                break
        v, d1, d2 = kern.derivs(pre, self._shift(part, scale, z), value=True)
        g0 = _comp_sum(part, v) - 0.5 * z * z
        g1 = scale * _comp_sum(part, d1, const=False) - z
        g2 = s2 * _comp_sum(part, d2, const=False) - 1.0
        return z, g0, g1, g2

    def _quadratic(self, part, c, base, scale):
        """Coefficients of ll(z) = c0 + c1 z + c2 z^2 (exact for Gaussian likelihoods)."""
        if part.gauss is not None:
            lead = base.shape[:-2]
            return part.gauss.quadratic(
                c,
                base.reshape(lead + (-1,)),
                np.broadcast_to(scale, base.shape).reshape(lead + (-1,)),
            )
        shape = base.shape[:-2] + (part.model.n_comp,)
        zs = np.array([0.0, 1.0, -1.0]).reshape((3,) + (1,) * len(shape)) * np.ones(shape)
        ll = self._ll_at(part, c, base[None], scale[None], zs)
        return ll[0], 0.5 * (ll[1] - ll[2]), 0.5 * (ll[1] + ll[2]) - ll[0]

    def _part_comp_logI(self, part: _Part, c, shift=None) -> np.ndarray:
        """log of each component's integral over its random effect: (..., n_comp).

        ``shift`` (..., arm of the part) is added to the linear predictor (group
        effects). Student-t effects: the normal integral at each scale of the
        t's scale mixture, weighted (:func:`lmsbayes.model.structure.t_scale_mixture`).
        """
        m = part.model
        base = _base(m, c, m.arrays["X"])
        if shift is not None:
            base = base + shift[..., :, None]
        scale = m.effect_scale(c)
        if self.t_mix is None:
            return self._comp_logI_normal(part, c, base, scale)
        mult, logw = self.t_mix
        if part.gauss is not None:  # every node of the mixture at once: (..., n_comp, node)
            lead = base.shape[:-2]
            sc = np.broadcast_to(scale, base.shape).reshape(lead + (-1,))
            return part.gauss.log_integral_nodes(c, base.reshape(lead + (-1,)), sc, mult) + logw
        return np.stack(
            [self._comp_logI_normal(part, c, base, scale * k) + lw for k, lw in zip(mult, logw)],
            axis=-1,
        )

    def _comp_logI_normal(self, part: _Part, c, base, scale) -> np.ndarray:
        """:meth:`_part_comp_logI` of a normal random effect of sd ``scale``.

        At the base predictor.
        """
        m = part.model
        if part.gauss is not None:
            lead = base.shape[:-2]
            scale = np.broadcast_to(scale, base.shape).reshape(lead + (-1,))
            return part.gauss.log_integral(c, base.reshape(lead + (-1,)), scale)
        if part.kernel is None:
            c0, c1, c2 = self._quadratic(part, c, base, scale)
            a = 1.0 - 2.0 * c2
            return c0 + 0.5 * c1 * c1 / a - 0.5 * np.log(a)
        lead = base.shape[:-2]
        scale = np.broadcast_to(scale, lead + (m.data.n_arms, m.Kz)).reshape(lead + (-1,))
        pre = part.kernel.prepare(base, c)
        mode, g0, _, g2 = self._newton(part, pre, scale)
        sd = 1.0 / np.sqrt(-g2)
        sq = math.sqrt(2.0) * sd
        off = self.x_gh != 0.0  # the middle node is the mode, where g = g0
        acc = np.full(mode.shape, math.exp(self.log_w_gh[~off][0]) if not off.all() else 0.0)
        if mode.size * off.sum() <= 2**15:  # small batches: all nodes in one array (fewer calls)
            x, lw = (
                self.x_gh[off].reshape((-1,) + (1,) * mode.ndim),
                self.log_w_gh[off].reshape((-1,) + (1,) * mode.ndim),
            )
            z = mode + sq * x
            g = _comp_sum(part, part.kernel.value(pre, self._shift(part, scale, z))) - 0.5 * z * z
            acc += np.exp(g - g0 + lw).sum(axis=0)
        else:  # one node at a time: the arrays stay in cache
            for x, lw in zip(self.x_gh[off], self.log_w_gh[off]):
                z = mode + sq * x
                g = (
                    _comp_sum(part, part.kernel.value(pre, self._shift(part, scale, z)))
                    - 0.5 * z * z
                )
                acc += np.exp(g - g0 + lw)  # g <= g0: g0 is the maximum
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log(sd) - 0.5 * math.log(math.pi) + g0 + np.log(acc)
        return np.where(np.isfinite(g0), out, -np.inf)

    def _per_arm(self, part: _Part, c, shift=None) -> np.ndarray:
        """Per arm (..., arm), or per arm and node (..., arm, node).

        The nodes are those of a Student-t's scale mixture.
        """
        li = self._part_comp_logI(part, c, None if shift is None else shift[..., part.arm_of])
        n, kz = part.model.data.n_arms, part.model.Kz
        if self.t_mix is None:
            return li.reshape(li.shape[:-1] + (n, kz)).sum(-1)
        T = li.shape[-1]
        # a component's nodes are its own (independent effects): mix within a component first
        li = special.logsumexp(li, axis=-1) if kz > 1 else li
        return (
            li.reshape(li.shape[:-2] + (n, kz, T)).sum(-2)
            if kz == 1
            else (li.reshape(li.shape[:-1] + (n, kz)).sum(-1))
        )

    def arm_loglik(self, values: dict[str, np.ndarray], shift=None) -> np.ndarray:
        """log p(y_i | theta) of every arm, latent quantities integrated out: (batch, arm).

        ``shift`` (batch, arm): added to every arm's linear predictor (a group
        effect held fixed); the group effects themselves are integrated by
        :meth:`loglik`.
        """
        c = self.model.canonical(values)
        d = self.model.data
        out = np.zeros(np.shape(values["tau"])[:1] + (d.n_arms,))
        for part in self.parts:
            per_arm = self._per_arm(part, c, shift)
            nodes = self.t_mix is not None and per_arm.ndim == out.ndim + 1
            if nodes and part.n_nodes_u > 1:  # u integrated at each node of the t mixture
                q = part.n_nodes_u
                per_arm = np.swapaxes(
                    per_arm.reshape(per_arm.shape[:-2] + (-1, q, per_arm.shape[-1])), -1, -2
                )
                if self.u_closed:
                    per_arm = _log_int_exp_quadratic(*quad_from_three(per_arm))
                else:
                    per_arm = log_sum_exp(per_arm + part.log_wu, axis=-1)
                out[..., part.arm_of[::q]] = log_sum_exp(per_arm, axis=-1)
                continue
            if nodes:
                per_arm = log_sum_exp(per_arm, axis=-1)
            if part.n_nodes_u > 1:
                q = part.n_nodes_u
                per_arm = per_arm.reshape(per_arm.shape[:-1] + (-1, q))
                if self.u_closed:
                    per_arm = _log_int_exp_quadratic(*quad_from_three(per_arm))
                else:
                    per_arm = special.logsumexp(per_arm + part.log_wu, axis=-1)
                out[..., part.arm_of[::q]] = per_arm
            else:
                out[..., part.arm_of] = per_arm
        return out

    # --- group effects: adaptive Gauss-Hermite per group ------------------------------

    def loglik(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """log p(y | theta), every latent quantity integrated out: (batch,)."""
        if not self.model.grouped:
            return self.arm_loglik(values).sum(-1)
        return self.group_loglik(values).sum(-1)

    def _onehot(self) -> np.ndarray:
        d = self.model.data
        if getattr(self, "_oh", None) is None:
            self._oh = np.zeros((d.n_arms, len(d.groups)))
            self._oh[np.arange(d.n_arms), d.group_idx] = 1.0
        return self._oh

    def _group_g(self, values, gt, w) -> np.ndarray:
        """g(w) = sum of the group's arm log-likelihoods at v = w, minus w^2 / 2: (batch, group)."""
        shift = gt[:, None] * w[:, self.model.data.group_idx]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ll = self.arm_loglik(values, shift) @ self._onehot()
        return ll - 0.5 * w * w

    def _group_mode(self, values):
        """Mode and sd of each group's standardised effect w given theta (two Newton steps).

        The steps use central differences of g at +-h; for a likelihood Gaussian in the
        linear predictor (survival with known fractions) g is exactly quadratic and the
        first step lands on the mode with the exact curvature.
        """
        gt = np.asarray(self.model.canonical(values)["group_tau"], float)[..., 0]
        B, G = gt.shape[0], len(self.model.data.groups)
        mode, sd = np.zeros((B, G)), np.ones((B, G))
        for _ in range(2):
            h = 0.5 * sd
            f0 = self._group_g(values, gt, mode)
            fp = self._group_g(values, gt, mode + h)
            fm = self._group_g(values, gt, mode - h)
            g1 = (fp - fm) / (2 * h)
            g2 = np.minimum(
                (fp - 2 * f0 + fm) / (h * h), -0.25
            )  # concave in w; guard a flat region
            ok = np.isfinite(g1) & np.isfinite(g2)
            mode = np.where(ok, mode + np.clip(-g1 / np.where(ok, g2, -1.0), -3.0, 3.0), mode)
            sd = np.where(ok, 1.0 / np.sqrt(-np.where(ok, g2, -1.0)), sd)
        return gt, mode, sd

    def group_loglik(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """log p(y_g | theta) of every group, its effect integrated out: (batch, group).

        Adaptive Gauss-Hermite over the group's standardised effect w ~ Normal(0, 1),
        centred at the mode of g(w) with the curvature's scale, the arms' own latent
        quantities integrated at each node. Exact (to rounding) where g is quadratic;
        tested against scipy quadrature otherwise.
        """
        gt, mode, sd = self._group_mode(values)
        sq = math.sqrt(2.0) * sd
        acc = None
        for x, lw in zip(self.x_gh, self.log_w_gh):
            g = self._group_g(values, gt, mode + sq * x) + lw
            acc = g if acc is None else np.logaddexp(acc, g)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log(sq) - 0.5 * math.log(2 * math.pi) + acc
        return np.where(np.isfinite(out), out, -np.inf)

    def _draw_groups(self, values, rng, n_grid: int = 49) -> np.ndarray:
        """Draws of each group's standardised effect w given theta and y: (batch, group).

        Inverse CDF of g on a grid of ``n_grid`` points over the mode +- 6 sd,
        linear between nodes (the density's discretisation error is of order
        (12 sd / n_grid)^2 times its curvature).
        """
        gt, mode, sd = self._group_mode(values)
        x = np.linspace(-6.0, 6.0, n_grid)
        pts = mode[..., None] + sd[..., None] * x  # (batch, group, grid)
        g = np.stack([self._group_g(values, gt, pts[..., j]) for j in range(n_grid)], axis=-1)
        g = np.where(np.isfinite(g), g, -np.inf)
        return _sample_piecewise_linear_rows(pts, g, rng)

    # --- latent draws ----------------------------------------------------------------

    def draw_latent(self, values: dict[str, np.ndarray], rng: np.random.Generator):
        """Draws of z (batch, arm, Kz), u (batch, latent arm) and v (batch, group, Kz).

        From their conditionals given theta: v from its integrated density on a
        grid (:meth:`_draw_groups`), then u and z given v exactly (a Student-t's
        z through a node of its scale mixture drawn with its posterior weight).
        """
        B = np.shape(values["tau"])[0]
        d = self.model.data
        z = np.empty((B, d.n_arms, self.model.Kz))
        u = np.empty((B, d.latent.size))
        v = np.zeros((B, len(d.groups), self.model.Kz))
        for s in range(0, B, self.chunk):
            sl = slice(s, s + self.chunk)
            z[sl], u[sl], v[sl] = self._draw_latent({k: x[sl] for k, x in values.items()}, rng)
        return z, u, v

    def _draw_latent(self, values, rng):
        m, d = self.model, self.model.data
        c = m.canonical(values)
        B = np.shape(values["tau"])[0]
        du = None
        shift, v = None, np.zeros((B, len(d.groups), m.Kz))
        if m.grouped:
            w = self._draw_groups(values, rng)
            v[..., 0] = w
            shift = np.asarray(c["group_tau"], float)[..., 0][:, None] * w[:, d.group_idx]
        u_draw = np.zeros((B, d.latent.size))
        if d.latent.size:
            if self.u_closed and self.t_mix is None:  # u | theta, y: a normal truncated to [0, 1]
                per = self._per_arm(self.latent_part, c, shift).reshape(B, d.latent.size, 3)
                u_draw = _draw_exp_quadratic(*quad_from_three(per), rng)
            else:
                grid = np.linspace(0.0, 1.0, 33)
                if getattr(self, "_u_grid_part", None) is None:
                    self._u_grid_part = self._latent_part(grid)
                per = self._per_arm(self._u_grid_part, c, shift)
                if per.ndim == 3:  # a Student-t's mixture nodes: u's density mixes over them
                    per = special.logsumexp(per, axis=-1)
                per = per.reshape(B, d.latent.size, grid.size)
                u_draw = _sample_piecewise_linear(grid, per, rng)
            du = np.zeros((B, d.n_arms))
            du[:, d.latent] = u_draw - d.uterine_centre
        whole = self._whole()
        base = _base(m, c, m.arrays["X"], m.arrays["Xu"], du)
        if shift is not None:
            base = base + shift[..., None]
        scale = np.broadcast_to(m.effect_scale(c), (B, d.n_arms, m.Kz)).reshape(B, -1)
        mult = None
        if self.t_mix is not None:  # a node of the t's scale mixture per component, by its weight
            k, logw = self.t_mix
            li = np.stack(
                [
                    self._comp_logI_normal(whole, c, base, scale.reshape(B, d.n_arms, m.Kz) * kk)
                    + lw
                    for kk, lw in zip(k, logw)
                ],
                axis=-1,
            )
            li = np.where(np.isfinite(li), li, -np.inf)
            p = np.exp(li - li.max(axis=-1, keepdims=True))
            cdf = np.cumsum(p, axis=-1)
            pick = (cdf < rng.uniform(size=cdf.shape[:-1] + (1,)) * cdf[..., -1:]).sum(-1)
            mult = k[np.minimum(pick, k.size - 1)]
            scale = scale * mult
        if whole.gauss is not None:
            mean, sd = whole.gauss.posterior(c, base.reshape(B, -1), scale)
            z = mean + sd * rng.standard_normal(mean.shape)
        elif whole.kernel is None:
            _, c1, c2 = self._quadratic(whole, c, base, scale.reshape(B, d.n_arms, m.Kz))
            a = 1.0 - 2.0 * c2
            z = c1 / a + rng.standard_normal(c1.shape) / np.sqrt(a)
        else:
            z = self._draw_z_rejection(whole, whole.kernel.prepare(base, c), scale, rng)
        if mult is not None:  # z = the node's sd multiplier times the standard normal drawn
            z = z * mult
        return z.reshape(B, d.n_arms, m.Kz), u_draw, v

    def _comp_values_at(self, part: _Part, pre, scale, b, cc, z):
        """g(z) = ll(z) - z^2 / 2 of components ``cc`` of draws ``b`` (1-D index arrays)."""
        if part.single:
            t, owner = cc, None
        else:
            counts = part.counts[cc]
            owner = np.repeat(np.arange(cc.size), counts)
            offs = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
            t = part.order[np.repeat(part.first[cc], counts) + offs]
        bt = b if owner is None else b[owner]
        shift = (scale[b, cc] * z) if owner is None else (scale[b, cc] * z)[owner]
        v = part.kernel.value(tuple(p[bt, t] for p in pre), shift, t=t)
        ll = v if owner is None else np.bincount(owner, weights=v, minlength=cc.size)
        if part.const is not None:
            ll = ll + part.const[cc]
        return ll - 0.5 * z * z

    def _draw_z_rejection(self, part: _Part, pre, scale, rng, max_rounds: int = 1000):
        """Exact draws of each component's z from exp(g(z)), g = ll(z) - z^2 / 2, by rejection.

        g is concave, so every tangent line lies above it: the envelope is
        the minimum of the tangents at the mode and at the mode +- sqrt(2)
        sd (sd from the curvature at the mode), a three-piece exponential
        density sampled exactly; a proposal is accepted with probability
        exp(g - envelope). For a Gaussian g this accepts 89% of proposals.
        """
        kern = part.kernel
        mode, g0, s0, g2 = self._newton(part, pre, scale)
        off = math.sqrt(2.0) / np.sqrt(-g2)
        tt = np.stack([mode - off, mode + off])
        v, d1, _ = kern.derivs(pre, self._shift(part, scale, tt), value=True)
        gt = _comp_sum(part, v) - 0.5 * tt * tt
        st = scale * _comp_sum(part, d1, const=False) - tt
        t1, g1, s1, t3, g3, s3 = tt[0], gt[0], st[0], tt[1], gt[1], st[1]
        t2, g2v, s2 = mode, g0, s0
        with np.errstate(all="ignore"):
            b12 = (g2v - g1 + s1 * t1 - s2 * t2) / (s1 - s2)
            b23 = (g3 - g2v + s2 * t2 - s3 * t3) / (s2 - s3)
        # any breakpoints give a valid envelope (each piece is a tangent, above g everywhere); these
        # are the tight ones
        b12 = np.where(np.isfinite(b12), np.clip(b12, t1, t2), 0.5 * (t1 + t2))
        b23 = np.where(np.isfinite(b23), np.clip(b23, t2, t3), 0.5 * (t2 + t3))
        w = b23 - b12
        x = s2 * w
        with np.errstate(all="ignore"):
            mid = np.where(np.abs(x) < 1e-8, np.log(w) + 0.5 * x, np.log(np.expm1(x) / s2))
            m1 = g1 + s1 * (b12 - t1) - np.log(s1)  # log masses of the three pieces
            m2 = g2v + s2 * (b12 - t2) + mid
            m3 = g3 + s3 * (b23 - t3) - np.log(-s3)
            top = np.maximum(np.maximum(m1, m2), m3)
            c1 = np.exp(m1 - top)
            c2 = c1 + np.exp(m2 - top)
            c3 = c2 + np.exp(m3 - top)
        env = np.stack([c1, c2, c3, b12, b23, w, x, t1, t2, t3, g1, g2v, g3, s1, s2, s3])
        z = np.empty(mode.shape)
        sel = None  # the first round: every component of every draw
        for _ in range(max_rounds):
            e = env if sel is None else env[:, sel[0], sel[1]]
            n_left = e.shape[1] if sel is not None else mode.size
            if n_left == 0:
                return z
            c1, c2, c3, b12, b23, w, x, t1, t2, t3, g1, g2v, g3, s1, s2, s3 = e
            r = rng.uniform(size=c3.shape) * c3
            v = rng.uniform(size=c3.shape)
            with np.errstate(all="ignore"):
                lv = np.log(v)
                za = b12 + lv / s1
                zb = np.where(np.abs(x) < 1e-8, b12 + v * w, b12 + np.log1p(v * np.expm1(x)) / s2)
                zc = b23 + lv / s3
            left, right = r <= c1, r > c2
            zp = np.where(left, za, np.where(right, zc, zb))
            envelope = np.where(
                left,
                g1 + s1 * (zp - t1),
                np.where(right, g3 + s3 * (zp - t3), g2v + s2 * (zp - t2)),
            )
            if sel is None:
                g = _comp_sum(part, kern.value(pre, self._shift(part, scale, zp))) - 0.5 * zp * zp
            else:
                g = self._comp_values_at(part, pre, scale, sel[0], sel[1], zp)
            ok = np.log(rng.uniform(size=c3.shape)) < g - envelope
            if sel is None:
                z[ok] = zp[ok]
                sel = np.nonzero(~ok)
            else:
                z[sel[0][ok], sel[1][ok]] = zp[ok]
                sel = (sel[0][~ok], sel[1][~ok])
        raise RuntimeError(
            "the exact engine's rejection sampler of the random effects did not finish"
        )


def log_sum_exp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log-sum-exp over an axis in plain numpy (scipy's is several times slower on small axes)."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(x - top), axis=axis)) + np.squeeze(top, axis=axis)


def quad_from_three(v: np.ndarray):
    """Coefficients of q(u) = a0 + a1 u + a2 u^2 from its values at u = 0, 1/2, 1 (last axis)."""
    f0, fh, f1 = v[..., 0], v[..., 1], v[..., 2]
    a2 = 2 * (f0 + f1 - 2 * fh)
    a1 = f1 - f0 - a2
    return f0, a1, a2


def _log_int_exp_quadratic(a0, a1, a2) -> np.ndarray:
    """log of the integral of exp(a0 + a1 u + a2 u^2) over u in [0, 1]."""
    a2n = np.minimum(a2, -1e-12)
    mu = -a1 / (2 * a2n)
    s = 1 / np.sqrt(-2 * a2n)
    # log(Phi(b) - Phi(a)), a = -mu / s, b = (1 - mu) / s, without cancellation, from whichever
    # tail is smaller: log Phi(b) and log Phi(a), or log(1 - Phi(a)) = log Phi(-a) and
    # log(1 - Phi(b))
    use_upper = mu > 0.5
    big = special.log_ndtr(np.where(use_upper, mu / s, (1 - mu) / s))
    small = special.log_ndtr(np.where(use_upper, (mu - 1) / s, -mu / s))
    # where the quadratic is flat, small == big gives log(0): those entries are replaced below
    with np.errstate(divide="ignore"):
        log_mass = big + np.log1p(-np.exp(np.minimum(small - big, 0.0)))
    out = a0 - a1 * a1 / (4 * a2n) + 0.5 * np.log(2 * np.pi) + np.log(s) + log_mass
    flat = ~(a2 < -1e-4)
    if flat.any():  # nearly flat in u (an effect near 0): Gauss-Legendre on the quadratic itself
        x, w = np.polynomial.legendre.leggauss(16)
        uu = 0.5 * (x + 1)
        q = a0[flat][:, None] + a1[flat][:, None] * uu + a2[flat][:, None] * uu**2 + np.log(0.5 * w)
        out[flat] = log_sum_exp(q, axis=-1)
    return out


def _draw_exp_quadratic(a0, a1, a2, rng) -> np.ndarray:
    """Draws from the density proportional to exp(a1 u + a2 u^2) on [0, 1] (truncated normal)."""
    a2n = np.minimum(a2, -1e-12)
    mu = -a1 / (2 * a2n)
    s = 1 / np.sqrt(-2 * a2n)
    lo, hi = special.ndtr((0 - mu) / s), special.ndtr((1 - mu) / s)
    ok = (a2 < -1e-4) & (hi - lo > 1e-10)
    u = rng.uniform(size=mu.shape)
    with np.errstate(invalid="ignore"):
        tn = np.clip(mu + s * special.ndtri(lo + u * (hi - lo)), 0.0, 1.0)
    bad = ~(ok & np.isfinite(tn))
    if bad.any():  # nearly flat, or all its mass in a far tail: inverse CDF on a fine grid
        grid = np.linspace(0.0, 1.0, 129)
        tn[bad] = _sample_piecewise_linear(
            grid, a1[bad][:, None] * grid + a2[bad][:, None] * grid**2, rng
        )
    return tn


def _sample_piecewise_linear(grid: np.ndarray, logdens: np.ndarray, rng) -> np.ndarray:
    """Draws from densities known on a common grid (last axis), linear between nodes."""
    x = np.broadcast_to(grid, logdens.shape)
    return _sample_piecewise_linear_rows(x, logdens, rng)


def _sample_piecewise_linear_rows(x: np.ndarray, logdens: np.ndarray, rng) -> np.ndarray:
    """One draw per row from the density exp(logdens) on nodes x (last axis).

    The density is linear between them.
    """
    f = np.exp(logdens - logdens.max(axis=-1, keepdims=True))
    dx = np.diff(x, axis=-1)
    mass = 0.5 * (f[..., 1:] + f[..., :-1]) * dx
    cdf = np.cumsum(mass, axis=-1)
    total = cdf[..., -1:]
    target = rng.uniform(size=total.shape) * total
    k = np.minimum((cdf < target).sum(axis=-1, keepdims=True), mass.shape[-1] - 1)
    before = np.take_along_axis(cdf, k, -1) - np.take_along_axis(mass, k, -1)
    r = target - before  # mass to cover inside cell k
    f0 = np.take_along_axis(f, k, -1)
    f1 = np.take_along_axis(f, k + 1, -1)
    w = np.take_along_axis(dx, k, -1)
    slope = (f1 - f0) / w
    # solve f0 s + slope s^2 / 2 = r for s in [0, w]
    with np.errstate(invalid="ignore", divide="ignore"):
        s_lin = r / f0
        disc = np.sqrt(np.maximum(f0 * f0 + 2 * slope * r, 0.0))
        s_quad = np.where(
            np.abs(slope) > 1e-12 * np.maximum(f0, 1e-300) / w, (disc - f0) / slope, s_lin
        )
    s = np.clip(np.where(np.isfinite(s_quad), s_quad, 0.5 * w), 0.0, w)
    return (np.take_along_axis(x, k, -1) + s)[..., 0]


# ======================================================================== the marginal posterior


@dataclass
class ExactResult:
    """Draws and diagnostics of an exact fit."""

    values: dict[str, np.ndarray]  # constrained global parameters (draw, *shape)
    z: np.ndarray  # (draw, arm, Kz)
    u: np.ndarray  # (draw, latent arm)
    diagnostics: dict
    v: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 1)))  # (draw, group, Kz)
    proposals: dict = field(default_factory=dict)  # the importance sample: theta, log weights
    rule: rules.Rule | None = None  # the fixed rule over the globals that summaries integrate with


def _duplicates(model: Model) -> tuple[np.ndarray, np.ndarray] | None:
    """Arms identical in everything the integrals read (design, stratum, their one observation).

    A large (study, r, n) table repeats its (r, n) pairs many times (100,000
    rows of n <= 200 hold at most ~20,000 distinct ones): each distinct arm's
    integral is computed once and counted as often as it occurs. Returns the
    first position of each distinct arm and its count, or None (no gain, or
    arms with several observations, latent fractions or survival curves).
    """
    from lmsbayes.model.families import LogitBinomial, LogitNormal

    d, a = model.data, model.arrays
    # the family is an object (never equal to its name): one observation per arm, no curve
    one_per_arm = isinstance(d.family, (LogitBinomial, LogitNormal))
    if d.latent.size or not one_per_arm or d.n_arms < 1000:
        return None
    if model.grouped:  # arms of a group share its effect: their integrals are not separable
        return None
    arm = np.asarray(a["arm_idx"])
    if arm.size != d.n_arms or not np.array_equal(arm, np.arange(d.n_arms)):
        return None
    # the model's design (the drift's basis columns included); an age discount's ages are in a
    cols = [np.asarray(a["X"], float), np.asarray(d.stratum_idx, float)[:, None]]
    for k, v in a.items():
        if k in ("X", "Xu", "stratum_idx", "arm_idx") or k in _TERM_ARRAYS:
            continue
        v = np.asarray(v)
        if v.shape[:1] != (arm.size,) or v.dtype.kind not in "biuf":
            return None
        cols.append(v.reshape(arm.size, -1).astype(float))
    key = np.concatenate(cols, axis=1)
    _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
    if first.size > 0.8 * d.n_arms:
        return None
    return first, counts


class _Posterior:
    def __init__(self, model: Model, integrator: Integrator) -> None:
        self.model, self.integrator, self.layout = model, integrator, Layout(model)
        self.n_evals = 0
        self._hessians: dict = {}  # (theta bytes, h) -> Hessian, kept from the mode search
        self.counts = None
        dup = _duplicates(model)
        if (
            dup is not None
        ):  # the integrals of the distinct arms, each counted as often as it occurs
            first, self.counts = dup
            self.integrator = Integrator(
                _take_model(model, first),
                nodes=integrator.x_gh.size,
            )

    def logpost(self, theta: np.ndarray, chunk: int | None = None) -> np.ndarray:
        theta = np.atleast_2d(theta)
        chunk = chunk or self.integrator.chunk
        out = np.empty(theta.shape[0])
        for s in range(0, theta.shape[0], chunk):
            th = theta[s : s + chunk]
            vals, logjac = self.layout.unpack(th)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if self.counts is None:  # group effects integrated here where the model has them
                    ll = self.integrator.loglik(vals)
                else:
                    ll = self.integrator.arm_loglik(vals) @ self.counts
                lp = self.model.log_prior(vals) + logjac + ll
            out[s : s + chunk] = np.where(np.isfinite(lp), lp, -np.inf)
        self.n_evals += theta.shape[0]
        return out

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        p = theta.size
        h = _FD_STEP * np.maximum(1.0, np.abs(theta))
        pts = np.vstack([theta, theta + np.diag(h), theta - np.diag(h)])
        f = self.logpost(pts)
        with np.errstate(
            invalid="ignore"
        ):  # -inf - -inf where both steps leave the support: handled below
            grad = (f[1 : p + 1] - f[p + 1 :]) / (2 * h)
        if not np.all(np.isfinite(grad)):
            grad = np.where(np.isfinite(grad), grad, 0.0)
        return -f[0], -grad

    def hessian(self, theta: np.ndarray, h: float = 1e-3) -> np.ndarray:
        """Hessian of the negative log posterior by central differences.

        Those of the mode search are kept: asked again at one of its points, it is reused.
        """
        key = (np.asarray(theta, float).tobytes(), h)
        if key not in self._hessians:
            self._hessians[key] = self._fd_hessian(np.asarray(theta, float), h)
        return self._hessians[key].copy()

    def _fd_hessian(self, theta: np.ndarray, h: float) -> np.ndarray:
        p = theta.size
        e = np.eye(p) * h
        pts = [theta]
        for i in range(p):
            pts += [theta + e[i], theta - e[i]]
        pairs = [(i, j) for i in range(p) for j in range(i + 1, p)]
        for i, j in pairs:
            pts += [
                theta + e[i] + e[j],
                theta + e[i] - e[j],
                theta - e[i] + e[j],
                theta - e[i] - e[j],
            ]
        f = self.logpost(np.vstack(pts))
        H = np.zeros((p, p))
        f0 = f[0]
        for i in range(p):
            H[i, i] = (f[1 + 2 * i] - 2 * f0 + f[2 + 2 * i]) / (h * h)
        base = 1 + 2 * p
        for k, (i, j) in enumerate(pairs):
            a, b, cc, d = f[base + 4 * k : base + 4 * k + 4]
            H[i, j] = H[j, i] = (a - b - cc + d) / (4 * h * h)
        return -H  # Hessian of the negative log posterior


#: the mode search (:func:`_bfgs_mode`) stops once every gradient entry is below this
_MODE_GTOL = 1e-5
_MODE_MAX_ITER = 500  # as scipy's BFGS had
_MODE_MAX_STEP = 2.0  # largest move of a coordinate in one step (log tau, logits: units of e)


def _fd_gradient(post: _Posterior, theta: np.ndarray):
    """Log posterior and its gradient by central differences (one batch of 2 p + 1 points)."""
    f, g = post.value_and_grad(theta)
    return -f, -g


def _start_metric(post: _Posterior, theta: np.ndarray) -> np.ndarray | None:
    """The inverse of the finite-difference Hessian at ``theta`` (eigenvalues in absolute value).

    None where it is not finite.
    """
    H = post.hessian(theta)
    if not np.all(np.isfinite(H)):
        return None
    vals, vecs = np.linalg.eigh(0.5 * (H + H.T))
    vals = np.maximum(np.abs(vals), 1e-8 * max(1.0, float(np.max(np.abs(vals)))))
    return (vecs / vals) @ vecs.T


def _bfgs_mode(post: _Posterior, theta0: np.ndarray, hess_inv0=None, known=()):
    """The posterior mode from ``theta0`` by BFGS on finite-difference gradients (numpy only).

    The globals are few (2 to about 12) and a batch of log posteriors costs
    little more than one, so: the inverse Hessian approximation starts as the
    inverse of the finite-difference Hessian (eigenvalues in absolute value:
    it always climbs; the identity, rescaled after the first step by s'y /
    y'y, Nocedal & Wright 2006 eq. 6.20, where that is not finite); each step
    moves at most :data:`_MODE_MAX_STEP` per coordinate along the quasi-Newton
    direction; the full step is tried with its gradient in one batch and
    taken if it raises the log posterior by Armijo's fraction of the slope,
    else it is halved (nine lengths in one batch) to the longest that does;
    the BFGS update is skipped where the curvature condition s'y > 0 fails,
    and a line search that fails restarts once from the identity. It stops
    once every gradient entry is below :data:`_MODE_GTOL`, as scipy's BFGS
    did with ``gtol=1e-5`` (the modes agree to about 1e-6 on the bundled
    specs; tests/test_exact_mode.py runs scipy as the reference).

    ``hess_inv0``: the initial inverse Hessian (default: that of the
    finite-difference Hessian at ``theta0``, one batch of 2 p^2 + 1 points).
    ``known``: optima (theta, log posterior) found from other starts; a run
    whose iterate comes within 0.1 of one (every coordinate) and within 0.5
    of its log posterior stops there (it is converging to that optimum).
    Returns x, log posterior, gradient norm (max |entry|), iterations, and
    whether the run stopped that way.
    """
    x = np.asarray(theta0, float).copy()
    p = x.size
    lengths = 0.5 ** np.arange(10)
    lp, g = _fd_gradient(post, x)
    if not np.isfinite(lp):
        return x, lp, math.inf, 0, False
    Hinv = _start_metric(post, x) if hess_inv0 is None else hess_inv0
    scaled = Hinv is not None
    Hinv = np.eye(p) if Hinv is None else Hinv
    nit = 0
    reset = False
    while nit < _MODE_MAX_ITER and np.max(np.abs(g), initial=0.0) >= _MODE_GTOL:
        if any(np.max(np.abs(x - y)) < 0.1 and lp > lp_y - 0.5 for y, lp_y in known):
            return x, lp, float(np.max(np.abs(g))), nit, True
        d = Hinv @ g
        if not g @ d > 0:  # not an ascent direction: start the approximation afresh
            Hinv = np.eye(p)
            d = g.copy()
        big = np.max(np.abs(d), initial=0.0)
        if big > _MODE_MAX_STEP:
            d = d * (_MODE_MAX_STEP / big)
        slope = float(g @ d)
        # the full step and its gradient in one batch: near the mode it is taken
        lp_new, g_new = _fd_gradient(post, x + d)
        if lp_new >= lp + 1e-4 * slope:
            s = d
        else:
            trial = post.logpost(x[None] + lengths[1:, None] * d[None])
            ok = np.flatnonzero(trial >= lp + 1e-4 * lengths[1:] * slope)
            if ok.size == 0:
                if reset:  # no length climbs along the gradient either: numerical precision
                    break
                Hinv, reset = np.eye(p), True
                continue
            s = lengths[1 + ok[0]] * d
            lp_new, g_new = _fd_gradient(post, x + s)
        reset = False
        x_new = x + s
        y = g - g_new  # the negative log posterior's gradient change
        sy = float(s @ y)
        if nit == 0 and sy > 0 and not scaled:
            Hinv = np.eye(p) * (sy / float(y @ y))
        if sy > 1e-12 * math.sqrt(float(s @ s) * float(y @ y)):
            rho = 1.0 / sy
            V = np.eye(p) - rho * np.outer(s, y)
            Hinv = V @ Hinv @ V.T + rho * np.outer(s, s)
        x, lp, g = x_new, lp_new, g_new
        nit += 1
    return x, lp, float(np.max(np.abs(g), initial=0.0)), nit, False


def _starts(post: _Posterior) -> np.ndarray:
    """Starting points for the mode search.

    The default start and others across log tau and log shape.

    Posteriors of these models can have more than one mode (simulation-based
    calibration found spurious optima at extreme shapes), so the search starts
    from several points and keeps every distinct optimum.
    """
    lay = post.layout
    base = lay.initial()
    tau = lay.tau_coords
    shape = (
        np.concatenate([np.arange(s.start, s.stop) for p, s in lay.blocks if p.name == "shape"])
        if any(p.name == "shape" for p, _ in lay.blocks)
        else np.zeros(0, dtype=int)
    )
    grid = []
    for log_tau in (np.log(0.3), np.log(0.08), np.log(1.0)):
        for log_k in (np.log(1.5), np.log(0.5), np.log(4.0)) if shape.size else (None,):
            th = base.copy()
            th[tau] = log_tau
            if log_k is not None:
                th[shape] = log_k
            grid.append(th)
    return np.array(grid)


def _mode(post: _Posterior, theta0: np.ndarray | None = None) -> tuple[np.ndarray, dict, list]:
    """The posterior mode of theta, by BFGS from several starts; every distinct optimum is kept.

    Returns
    -------
    mode, info, optima
        ``optima`` lists (theta, log posterior) of the distinct local optima, best first.
    """
    starts = _starts(post) if theta0 is None else np.atleast_2d(theta0)
    lp0 = post.logpost(starts)
    order = np.argsort(-lp0)
    runs = []
    for i in order[: min(3, len(order))]:
        if not np.isfinite(lp0[i]) and runs:
            continue
        # later starts: the curvature at the first optimum (its Hessian is the proposal's too)
        metric = _start_metric(post, runs[0][0]) if runs and not runs[0][4] else None
        runs.append(
            _bfgs_mode(post, starts[i], metric, known=[(r[0], r[1]) for r in runs if not r[4]])
        )
    runs = [r[:4] for r in runs if not r[4]]
    runs = [r for r in runs if np.all(np.isfinite(r[0])) and np.isfinite(r[1])]
    if not runs:
        raise RuntimeError("the exact engine could not find a finite posterior mode")
    runs.sort(key=lambda r: -r[1])
    optima = []
    for x, lp, _grad, _nit in runs:
        if all(np.max(np.abs(x - y)) > 0.25 for y, _ in optima):
            optima.append((x, lp))
    best, lp_best, grad, nit = runs[0]
    info = {
        "mode_converged": grad < 1e-3,
        "mode_grad_norm": grad,
        "mode_iterations": nit,
        "n_modes": len([o for o in optima if o[1] > lp_best - 8.0]),
    }
    return best, info, optima


def _covariance(H: np.ndarray) -> np.ndarray:
    """The inverse of a Hessian, its eigenvalues floored (positive definite).

    A Hessian with non-finite entries (the log posterior is -inf next to the
    point) falls back to its finite diagonal: a cautious, wide proposal.
    """
    H = np.asarray(H, dtype=float)
    if not np.all(np.isfinite(H)):
        d = np.diag(H)
        H = np.diag(np.where(np.isfinite(d) & (d > 0), d, 1.0))
    H = 0.5 * (H + H.T)
    vals, vecs = np.linalg.eigh(H)
    vals = np.maximum(vals, 1e-6 * max(1.0, vals.max()))
    return (vecs / vals) @ vecs.T


def _covariances(H: np.ndarray) -> np.ndarray:
    """:func:`_covariance` of a stack of Hessians (..., p, p), vectorised where all are finite."""
    if not np.all(np.isfinite(H)):
        return np.stack([_covariance(Hk) for Hk in H])
    H = 0.5 * (H + np.swapaxes(H, -1, -2))
    vals, vecs = np.linalg.eigh(H)
    vals = np.maximum(vals, 1e-6 * np.maximum(1.0, vals.max(axis=-1, keepdims=True)))
    return (vecs / vals[..., None, :]) @ np.swapaxes(vecs, -1, -2)


def _pd(C: np.ndarray) -> np.ndarray:
    """A covariance matrix made positive definite (eigenvalues floored)."""
    C = 0.5 * (C + C.T)
    vals, vecs = np.linalg.eigh(C)
    vals = np.maximum(vals, 1e-10 * max(1e-12, vals.max()))
    return (vecs * vals) @ vecs.T


def _mvt_logpdf(x: np.ndarray, mean: np.ndarray, chol: np.ndarray, df: float) -> np.ndarray:
    d = mean.size
    r = np.linalg.solve(chol, (x - mean).T).T if d else np.zeros((len(x), 0))
    maha = np.sum(r * r, axis=-1)
    logdet = 2 * np.sum(np.log(np.diag(chol))) if d else 0.0
    return (
        special.gammaln((df + d) / 2)
        - special.gammaln(df / 2)
        - 0.5 * d * math.log(df * math.pi)
        - 0.5 * logdet
        - 0.5 * (df + d) * np.log1p(maha / df)
    )


def _mvt_draw(rng, n: int, mean: np.ndarray, chol: np.ndarray, df: float) -> np.ndarray:
    d = mean.size
    zz = rng.standard_normal((n, d))
    w = np.sqrt(df / rng.chisquare(df, size=(n, 1)))
    return mean + (zz @ chol.T) * w


def _t_proposal(post, mode, cov, n, rng, df, inflate: float = 1.1):
    """A multivariate Student-t at ``mode``, with a defensive component wider in log tau.

    A poorly identified tau has a long left tail in log tau (density ~ tau near 0), which a
    Laplace-centred t reaches too rarely: quantiles of tau near 0 came out too high (per_landmark,
    1L 6-month tau: 5% quantile 0.0155 against 0.011 from NUTS and from 100,000 draws). A quarter
    of the draws come from the same t with the log-tau sds doubled (defensive importance
    sampling, Hesterberg 1995): where it dominates, weights stay bounded.
    """
    chol = np.linalg.cholesky(cov * inflate**2)
    T = post.layout.tau_coords
    if T.size == 0:
        theta = _mvt_draw(rng, n, mode, chol, df)
        return (
            theta,
            _mvt_logpdf(theta, mode, chol, df),
            {"proposal": "student-t", "logq": lambda th: _mvt_logpdf(th, mode, chol, df)},
        )
    scale = np.ones(mode.size)
    scale[T] = _DEFENSIVE_TAU_SCALE
    chol_w = np.linalg.cholesky(cov * inflate**2 * np.outer(scale, scale))
    eps = _DEFENSIVE_WEIGHT
    wide = rng.random(n) < eps
    # one standard t vector per point, scaled by the component the point falls in (every point
    # uses the same coordinates of a quasi-random rule, whichever component it is in)
    base = _mvt_draw(rng, n, np.zeros(mode.size), np.eye(mode.size), df)
    theta = mode + np.where(wide[:, None], base @ chol_w.T, base @ chol.T)

    def logq(th):
        return np.logaddexp(
            math.log1p(-eps) + _mvt_logpdf(th, mode, chol, df),
            math.log(eps) + _mvt_logpdf(th, mode, chol_w, df),
        )

    return theta, logq(theta), {"proposal": "student-t (defensive in log tau)", "logq": logq}


def _conditional_newton(post, points: np.ndarray, O: np.ndarray, h: float = 1e-3):
    """One Newton step in the coordinates O at each point (the others fixed), and the Hessian there.

    Returns the updated points and, per point, the covariance (inverse
    Hessian of the negative log posterior) over O.
    """
    n, po = len(points), O.size
    e = np.eye(po) * h
    offsets = [np.zeros(po)]
    for i in range(po):
        offsets += [e[i], -e[i]]
    pairs = [(i, j) for i in range(po) for j in range(i + 1, po)]
    for i, j in pairs:
        offsets += [e[i] + e[j], e[i] - e[j], -e[i] + e[j], -e[i] - e[j]]
    offsets = np.array(offsets)
    pts = np.repeat(points[:, None, :], len(offsets), axis=1)
    pts[:, :, O] += offsets[None]
    f = post.logpost(pts.reshape(-1, points.shape[1])).reshape(n, len(offsets))
    g = np.stack([(f[:, 1 + 2 * i] - f[:, 2 + 2 * i]) / (2 * h) for i in range(po)], axis=1)
    H = np.zeros((n, po, po))
    for i in range(po):
        H[:, i, i] = (f[:, 1 + 2 * i] - 2 * f[:, 0] + f[:, 2 + 2 * i]) / (h * h)
    base = 1 + 2 * po
    for k, (i, j) in enumerate(pairs):
        q = f[:, base + 4 * k : base + 4 * k + 4]
        H[:, i, j] = H[:, j, i] = (q[:, 0] - q[:, 1] - q[:, 2] + q[:, 3]) / (4 * h * h)
    covs = _covariances(-H)
    out = points.copy()
    step = np.einsum("nij,nj->ni", covs, g)
    out[:, O] += np.clip(step, -2.0, 2.0)
    return out, covs


def _grid_proposal(post, mode, cov, n, rng, df):
    """Grid over the log tau coordinates, conditional Laplace (Student-t) for the others.

    At tau the other parameters are proposed around their conditional mode
    with their conditional scales, both varying with tau: the funnel of a
    poorly identified tau widens and narrows the fixed effects with it.
    Conditional modes and scales come from one-step conditional Laplace fits
    at tau +- 1.5 sd along each axis (log-linear in tau).
    """
    T = post.layout.tau_coords
    O = np.setdiff1d(np.arange(mode.size), T)
    dim = T.size
    sd_t = np.sqrt(np.diag(cov)[T])
    cond0 = np.linalg.inv(np.linalg.inv(cov)[np.ix_(O, O)]) if O.size else np.zeros((0, 0))
    sd0 = np.sqrt(np.diag(cond0)) if O.size else np.zeros(0)
    # conditional modes and log sds along each tau axis, piecewise linear between anchors
    # and flat beyond them (as tau -> 0 the model tends to a fixed-effect one whose
    # conditional scales stop shrinking; a straight-line extrapolation would not)
    offsets = np.array([-4.0, -2.5, -1.25, 0.0, 1.25, 2.5])
    axes_mean, axes_logsd = [], []
    if O.size:
        reg = cov[np.ix_(O, T)] @ np.linalg.inv(cov[np.ix_(T, T)])
        anchors = []
        for i in range(dim):
            for k in offsets:
                if k == 0.0:
                    continue
                row = mode.copy()
                row[T[i]] += k * sd_t[i]
                row[O] += reg[:, i] * k * sd_t[i]
                anchors.append(row)
        moved, covs = _conditional_newton(post, np.array(anchors), O)
        j = 0
        for _i in range(dim):
            mean_i, logsd_i = [], []
            for k in offsets:
                if k == 0.0:
                    mean_i.append(mode[O])
                    logsd_i.append(np.log(sd0))
                else:
                    mean_i.append(moved[j, O])
                    logsd_i.append(np.log(np.sqrt(np.diagonal(covs[j]))))
                    j += 1
            # an anchor where the log posterior is not finite keeps the mode's values
            axes_mean.append(
                np.nan_to_num(np.array(mean_i) - mode[O], nan=0.0, posinf=0.0, neginf=0.0)
            )
            axes_logsd.append(
                np.nan_to_num(np.array(logsd_i) - np.log(sd0), nan=0.0, posinf=0.0, neginf=0.0)
            )
        corr0 = cond0 / np.outer(sd0, sd0)
        chol_corr = np.linalg.cholesky(_pd(corr0))

    def cond(tau):
        """Conditional mean and sd (per draw) of the others at tau: additive over the tau axes."""
        mean = np.tile(mode[O], (len(tau), 1))
        logs = np.zeros((len(tau), O.size))
        for i in range(dim):
            x = mode[T[i]] + offsets * sd_t[i]
            for o in range(O.size):
                mean[:, o] += np.interp(tau[:, i], x, axes_mean[i][:, o])
                logs[:, o] += np.interp(tau[:, i], x, axes_logsd[i][:, o])
        return mean, sd0 * 1.1 * np.exp(logs)

    G = 41 if dim == 1 else 17
    lo, hi = mode[T] - 5 * sd_t, mode[T] + 5 * sd_t
    for _ in range(4):  # widen until the edges carry negligible density
        axes = [np.linspace(lo[i], hi[i], G) for i in range(dim)]
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, dim)
        pts = np.tile(mode, (mesh.shape[0], 1))
        pts[:, T] = mesh
        if O.size:
            mean, sdv = cond(mesh)
            pts[:, O] = mean
            lp = post.logpost(pts) + np.sum(np.log(sdv), axis=1)  # Laplace: p(tau, o*) |C(tau)|^1/2
        else:
            lp = post.logpost(pts)
        lp = lp.reshape((G,) * dim)
        top = np.max(lp)
        widen = False
        for i in range(dim):
            if np.max(np.take(lp, 0, axis=i)) > top - 9:
                lo[i] -= 2.5 * sd_t[i]
                widen = True
            if np.max(np.take(lp, G - 1, axis=i)) > top - 9:
                hi[i] += 2.5 * sd_t[i]
                widen = True
        if not widen:
            break
    # the grid actually evaluated (a last widening that was not evaluated must not move it)
    lo, hi = np.array([a[0] for a in axes]), np.array([a[-1] for a in axes])
    width = (hi - lo) / (G - 1)
    logpi = lp.ravel() - special.logsumexp(lp)
    cell = rng.choice(logpi.size, size=n, p=np.exp(logpi))
    tau = mesh[cell] + (rng.uniform(size=(n, dim)) - 0.5) * width
    theta = np.empty((n, mode.size))
    theta[:, T] = tau
    logq = logpi[cell] - np.sum(np.log(width))
    if O.size:
        mean, sdv = cond(tau)
        zt = _mvt_draw(rng, n, np.zeros(O.size), chol_corr, df)  # correlated t with unit scales
        theta[:, O] = mean + zt * sdv
        logq = logq + _mvt_logpdf(zt, np.zeros(O.size), chol_corr, df) - np.sum(np.log(sdv), axis=1)
    edge = np.zeros((G,) * dim, dtype=bool)
    for i in range(dim):
        idx = [slice(None)] * dim
        idx[i] = 0
        edge[tuple(idx)] = True
        idx[i] = G - 1
        edge[tuple(idx)] = True

    def logq_at(th: np.ndarray) -> np.ndarray:
        """The proposal's log density at any points (for multiple importance sampling)."""
        tau_ = th[:, T]
        pos = np.round((tau_ - lo) / width).astype(int)
        inside = np.all(
            (pos >= 0) & (pos < G) & (np.abs(tau_ - (lo + pos * width)) <= width / 2 + 1e-12),
            axis=1,
        )
        flat = np.ravel_multi_index(tuple(np.clip(pos, 0, G - 1).T), (G,) * dim)
        out = np.where(inside, logpi[flat] - np.sum(np.log(width)), -np.inf)
        if O.size:
            mean_, sd_ = cond(tau_)
            zt_ = (th[:, O] - mean_) / sd_
            out = (
                out
                + _mvt_logpdf(zt_, np.zeros(O.size), chol_corr, df)
                - np.sum(np.log(sd_), axis=1)
            )
        return out

    return (
        theta,
        logq,
        {
            "proposal": f"grid over log tau ({dim}-D, {G**dim} nodes) x conditional Student-t",
            "edge_cells": edge.ravel()[cell],
            "logq": logq_at,
        },
    )


def posterior_mode(model: Model, settings=None) -> np.ndarray:
    """The posterior mode of the global parameters.

    Unconstrained vector, lmsbayes.engines.exact.Layout.
    """
    integ = Integrator(
        model,
        **(
            {}
            if settings is None
            else {"nodes": settings.nodes, "uterine_nodes": settings.uterine_nodes}
        ),
    )
    return _mode(_Posterior(model, integ))[0]


def fit_exact(
    model: Model,
    settings,
    seed: int,
    draws: int | None = None,
    *,
    latent: bool = True,
    start: np.ndarray | None = None,
    progress=None,
) -> ExactResult:
    """Fit a model by integration and importance sampling (see the module docstring).

    Parameters
    ----------
    model : lmsbayes.model.definition.Model
    settings : lmsbayes.spec.ExactSettings
    seed : int
    draws : int, optional
        Overrides ``settings.draws``.
    latent : bool
        Draw the arms' random effects and latent fractions (False: only the
        global parameters are drawn; ``z`` and ``u`` are returned as zeros;
        validation refits need no more).
    start : ndarray, optional
        A starting point for the mode search (e.g. the mode of the full data
        for a leave-one-out refit); default: several starts.
    progress : callable, optional
        Called with a line of text after each stage (mode, rule, arm draws).

    Returns
    -------
    ExactResult
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    integrator = Integrator(model, nodes=settings.nodes, uterine_nodes=settings.uterine_nodes)
    post = _Posterior(model, integrator)
    say = progress or (lambda message: None)
    say(f"{model.data.n_arms} arms, {post.layout.size} global parameters: finding the mode ...")
    mode, info, optima = _mode(post, start)
    H = post.hessian(mode)
    cov = _covariance(H)
    n = int(draws or settings.draws)
    say(f"mode found ({time.perf_counter() - t0:.1f} s); integrating the globals ...")
    others = [(x, lp) for x, lp in optima[1:] if lp > optima[0][1] - 8.0]
    T = post.layout.tau_coords
    n_other = post.layout.size - T.size
    rule, edge_mass, khat = None, math.nan, math.nan
    if T.size == 1 and n_other <= _TENSOR_MAX_OTHERS and not others:
        # few globals: a tensor grid (deterministic to quadrature accuracy, no importance sampling)
        O = np.setdiff1d(np.arange(mode.size), T)
        try:
            large = model.data.n_arms > _LARGE_ARMS
            rule, edge_mass = rules.tensor_rule(
                post.logpost,
                lambda pts: _conditional_newton(post, pts, O),
                mode,
                cov,
                int(T[0]),
                **({"n_tau": 41, "n_other": 21} if large else {}),
            )
            pinfo = {"proposal": "tensor grid over log tau x conditional trapezoid"}
            if not np.all(np.isfinite(rule.log_weight[rule.log_weight > -np.inf])):
                rule = None
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            rule = None
    if rule is None:
        rule, pinfo, khat, edge_mass = _lattice_rule(post, mode, cov, others, optima, settings)
    say(f"rule of {len(rule.theta)} points ({time.perf_counter() - t0:.1f} s)")
    lw_rule = rule.log_weight
    # a tensor rule's weights are quadrature weights, not importance weights: its draws are as
    # good as their number (the Kish size of grid weights measures the grid's extent, not error)
    ess = importance_ess(lw_rule) if rule.kind == "lattice" else float(n)
    vals, _ = post.layout.unpack(rule.draw(n, rng))  # n equal-weight draws of the rule
    if latent:
        z, u, v = integrator.draw_latent(vals, rng)
        say(f"arm-level draws ({time.perf_counter() - t0:.1f} s)")
    else:
        z = np.zeros((n, model.data.n_arms, model.Kz))
        u = np.zeros((n, model.data.latent.size))
        v = np.zeros((n, len(model.data.groups), model.Kz))
    diag = {
        "engine": "exact",
        "khat": float(khat),
        "is_ess": ess,
        "n_proposals": int(len(rule.theta)),
        "proposal": pinfo["proposal"],
        "rule": rule.description,
        "tau_grid_edge_mass": edge_mass,
        "n_logpost_evals": post.n_evals,
        "seconds": time.perf_counter() - t0,
        "mode": mode,
        "mode_names": post.layout.names,
        **info,
    }
    return ExactResult(
        values=vals,
        z=z,
        u=u,
        v=v,
        diagnostics=diag,
        proposals={"theta": rule.theta, "log_weight": lw_rule, "names": post.layout.names},
        rule=rule,
    )


def _lattice_rule(post, mode, cov, others, optima, settings, shift_seed=None):
    """The proposal's points from a fixed shifted lattice rule, with importance weights.

    The proposals (Student-t, log-tau grid x conditional Student-t, mixture of
    Student-t at several modes) are those of random importance sampling; their
    uniform numbers come from :class:`lmsbayes.engines.rules.LatticeStream`
    instead of a generator, so the points, and every summary, are the same at
    any seed. Returns the rule, the proposal's description, the Pareto k-hat of
    the weights (a diagnostic: the rule keeps the raw weights) and the tau
    grid's edge mass.
    """
    # many arms: the globals' posterior is close to its Laplace approximation, and every point
    # costs a pass over the arms: 8 x 128 points (the stated error says what that costs)
    n_lat = rules.LATTICE_N if post.model.data.n_arms <= _LARGE_ARMS else 128
    qr = rules.LatticeStream(n=n_lat, shift_seed=shift_seed)
    n = qr.size
    T = post.layout.tau_coords
    use_grid = 0 < T.size <= _GRID_MAX_TAU and not others
    # several modes: a mixture of Student-t proposals, one at each mode, weighted by its
    # Laplace mass
    if others:
        theta, logq, pinfo = _mixture_proposal(
            post,
            [(mode, cov, optima[0][1])]
            + [(x, _covariance(post.hessian(x)), lp) for x, lp in others],
            n,
            qr,
            settings.df,
        )
    else:
        maker = _grid_proposal if use_grid else _t_proposal
        try:
            theta, logq, pinfo = maker(post, mode, cov, n, qr, settings.df)
        except (
            np.linalg.LinAlgError,
            ValueError,
            FloatingPointError,
        ):  # a degenerate conditional: the t proposal
            qr = rules.LatticeStream(n=n_lat, shift_seed=shift_seed)
            theta, logq, pinfo = _t_proposal(post, mode, cov, n, qr, settings.df)
    group = qr.replicate
    logp = post.logpost(theta)
    lw, khat = psis(logp - logq)
    if khat > _SECOND_ROUND_KHAT and "logq" in pinfo:
        # a second round: a Student-t matched to the weighted points (wider, heavier-tailed), and
        # the
        # two rounds combined by multiple importance sampling (the balance heuristic: every point
        # weighted against the mixture of both proposals), so no point of the first round is wasted.
        # The mixture is at least half the first proposal everywhere, so no weight grows by more
        # than 2: the combined rule is kept unless its k-hat is unusable. Keeping the first round
        # whenever its k-hat was the lower one left the left tail of a poorly identified tau short
        # (eortc2021, 1L 6-month tau: P(tau < 0.05) 0.048 against 0.072 by NUTS and by 2 rounds)
        w = np.exp(lw)
        m2 = w @ theta
        c2 = _pd(((theta - m2) * w[:, None]).T @ (theta - m2))
        try:
            theta2, _, p2 = _t_proposal(post, m2, c2, n, qr, min(settings.df, 4.0), inflate=1.3)
        except RuntimeError:  # the lattice's dimensions are used up: one round
            theta2 = None
        if theta2 is not None:
            both = np.vstack([theta, theta2])
            logq_mix = np.logaddexp(pinfo["logq"](both), p2["logq"](both)) - math.log(2.0)
            logp_both = np.concatenate([logp, post.logpost(theta2)])
            lw2, khat2 = psis(logp_both - logq_mix)
            if khat2 < max(khat, _KHAT_USABLE) or not np.isfinite(khat):
                edge = pinfo.get("edge_cells")
                pinfo = {"proposal": pinfo["proposal"] + " + moment-matched Student-t (2 rounds)"}
                if edge is not None:
                    pinfo["edge_cells"] = np.concatenate([edge, np.zeros(n, dtype=bool)])
                theta, logp, logq, khat = both, logp_both, logq_mix, khat2
                group = np.concatenate([group, group])
    raw = logp - logq
    raw = np.where(np.isfinite(raw), raw, -np.inf)
    raw = raw - special.logsumexp(raw)
    edge_mass = float(np.exp(raw)[pinfo["edge_cells"]].sum()) if "edge_cells" in pinfo else math.nan
    rule = rules.Rule(theta=theta, log_weight=raw, group=group, kind="lattice")
    return rule, pinfo, khat, edge_mass


def _mixture_proposal(post, components, n, rng, df):
    """A mixture of multivariate Student-t proposals (one per mode).

    Weights by the modes' Laplace mass.
    """
    chols = [np.linalg.cholesky(c * 1.1**2) for _, c, _ in components]
    logw = np.array([lp + np.sum(np.log(np.diag(L))) for (_, _, lp), L in zip(components, chols)])
    w = np.exp(logw - logw.max())
    w = 0.8 * w / w.sum() + 0.2 / len(w)  # defensive: no mode starved of draws
    pick = rng.choice(len(components), size=n, p=w)
    d = components[0][0].size
    base = _mvt_draw(rng, n, np.zeros(d), np.eye(d), df)  # one standard t vector per point
    theta = np.empty((n, d))
    for k, ((m, _, _), L) in enumerate(zip(components, chols)):
        sel = pick == k
        theta[sel] = m + base[sel] @ L.T
    dens = np.stack(
        [
            np.log(w[k]) + _mvt_logpdf(theta, m, L, df)
            for k, ((m, _, _), L) in enumerate(zip(components, chols))
        ]
    )
    return (
        theta,
        special.logsumexp(dens, axis=0),
        {"proposal": f"mixture of {len(components)} Student-t (one per mode)"},
    )


def _systematic(w: np.ndarray, n: int, rng) -> np.ndarray:
    """Systematic resampling: n indices with frequencies proportional to w, in random order."""
    cdf = np.cumsum(w / w.sum())
    u = (rng.uniform() + np.arange(n)) / n
    idx = np.minimum(np.searchsorted(cdf, u), len(w) - 1)
    return rng.permutation(idx)


# ============================================================================ the engine protocol


@dataclass(frozen=True)
class ExactDiagnostics(Diagnostics):
    """Diagnostics of the exact engine.

    Importance k-hat and ESS, tau-grid edge mass, mode search.
    """

    independent_draws = True

    @property
    def ess(self) -> float:
        """The importance ESS."""
        return self.is_ess

    @property
    def quadrature(self) -> bool:
        """True when the globals were integrated by a tensor grid (no importance sampling)."""
        return self.proposal.startswith("tensor grid")

    @property
    def problems(self) -> list[str]:
        """Importance k-hat, importance ESS, tau-grid edge mass and mode-search problems."""
        out = []
        if self.quadrature:  # quadrature weights: no k-hat and no importance ESS to check
            pass
        elif not self.khat <= self.khat_max:
            out.append(f"importance-sampling k-hat {self.khat:.2f} > {self.khat_max}")
        if not self.quadrature and not self.is_ess >= ESS_MIN:
            out.append(f"importance ESS {self.is_ess:.0f} < {ESS_MIN}")
        if self.tau_grid_edge_mass > EDGE_MASS_MAX:
            out.append(
                f"{100 * self.tau_grid_edge_mass:.1f}% of the posterior mass at the edge of the "
                "tau grid"
            )
        if not self.mode_converged:
            out.append("the posterior mode search did not converge")
        return out

    def line(self) -> str:
        """One-line summary for logs and the command line."""
        grid = (
            ""
            if math.isnan(self.tau_grid_edge_mass)
            else f", tau grid edge mass {self.tau_grid_edge_mass:.4f}"
        )
        if self.n_modes > 1:
            grid += f", {self.n_modes} posterior modes (mixture proposal)"
        of = (
            f"{self.n_proposals} proposals, {self.n_draws} draws"
            if self.n_proposals
            else f"{self.n_draws} draws"
        )
        if self.quadrature:
            return (
                f"diagnostics (exact engine): tensor-grid quadrature over the global parameters "
                f"({self.n_proposals} points), {self.n_draws} draws{grid} -> {self._status()}"
            )
        return (
            f"diagnostics (exact engine): importance k-hat {self.khat:.2f}, importance ESS "
            f"{self.is_ess:.0f} of {of}{grid} -> {self._status()}"
        )


class ExactEngine:
    """The exact engine under the protocol of :mod:`lmsbayes.engines.base`."""

    name = "exact"
    label = "exact engine"

    def supports(self, spec) -> str | None:
        """None if the exact engine fits this spec, else the reason it cannot."""
        return supports(spec)

    def fit(self, model: Model, settings: FitSettings, progress: Progress) -> EngineResult:
        """Integrate and importance-sample (:func:`fit_exact`); the draws as one chain."""
        progress("exact engine: integrating (no compilation) ...")
        # large tables keep no arm-level draws (4,000 draws x 100,000 arms is 3.2 GB an array):
        # their summaries come from the rule over the globals, which needs none
        large = model.data.n_arms > ARM_DRAWS_MAX
        res = fit_exact(
            model,
            model.spec.exact,
            settings.seed,
            settings.draws,
            latent=settings.latent and not large,
            start=settings.start,
            progress=(lambda line: progress(f"exact engine: {line}")) if large else None,
        )
        posterior, groups, attrs = _as_groups(model, res, arm_draws=not large)
        return EngineResult(posterior, groups, attrs, self.diagnostics(posterior, groups, attrs))

    def diagnostics(self, posterior, groups, attrs) -> ExactDiagnostics:
        """The diagnostics from the engine statistics stored with the draws."""
        n = int(posterior.sizes["chain"] * posterior.sizes["draw"])
        return ExactDiagnostics(
            divergences=0,
            max_rhat=math.nan,
            min_ess_bulk=float(attrs["is_ess"]),
            min_ess_tail=float(attrs["is_ess"]),
            n_draws=n,
            table=_empty_table(),
            engine=self.name,
            khat=float(attrs["khat"]),
            is_ess=float(attrs["is_ess"]),
            tau_grid_edge_mass=float(attrs.get("tau_grid_edge_mass", math.nan)),
            khat_max=float(attrs.get("khat_max", 0.7)),
            proposal=str(attrs.get("proposal", "")),
            note=str(attrs.get("engine_note", "")),
            mode_converged=bool(int(attrs.get("mode_converged", 1))),
            n_modes=int(attrs.get("n_modes", 1)),
            n_proposals=int(attrs.get("n_proposals", 0)),
        )

    def warm_start(self, model: Model) -> np.ndarray:
        """The posterior mode of the model's global parameters (a refit's starting point)."""
        return posterior_mode(model, model.spec.exact)

    def fast(self, spec, draws: int):
        """The spec unchanged: an exact fit takes milliseconds."""
        return spec


def _empty_table():
    import pandas as pd

    return pd.DataFrame()


#: above this many arms an exact fit keeps no arm-level draws (random effects, latent
#: fractions, arm rates, replicated data): the global parameters' draws and rule only
ARM_DRAWS_MAX = 2000


def _as_groups(model: Model, res: ExactResult, arm_draws: bool = True):
    """The exact engine's draws as a sampler gives them (one chain of independent draws).

    Returns the posterior Dataset, the other groups (the importance sample and the
    integration rule) and the attrs.
    """
    # numpy groups: xarray (and its dask probe) only when a user asks for the DataTree
    coords = model.coords
    S = res.z.shape[0]
    base = {"chain": [0], "draw": np.arange(S)}
    data_vars = {}
    for p in model.params:
        data_vars[p.name] = (("chain", "draw", *p.dims), res.values[p.name][None])
    if arm_draws:
        z = model.z_named(res.z)
        data_vars["z"] = (("chain", "draw", *model.z_dims), z[None])
        if model.data.latent.size:
            data_vars["uterine_latent"] = (("chain", "draw", "arm_latent"), res.u[None])
    else:
        coords = {k: v for k, v in coords.items() if k not in ("arm", "arm_latent")}
    if model.grouped:  # the group effects are globals' companions: kept with or without arm draws
        v = res.v if model.per_landmark else res.v[..., 0]
        data_vars["v"] = (("chain", "draw", "group", *model.effect_dims), v[None])
    post = Group(data_vars, coords={**base, **{k: v for k, v in coords.items()}})
    d = res.diagnostics
    prop = res.proposals
    isg = Group(
        {
            "theta": (("is_draw", "parameter"), prop["theta"]),
            "log_weight": (("is_draw",), prop["log_weight"]),
        },
        coords={"parameter": list(prop["names"])},
    )
    groups = {"importance_sampling": isg}
    if res.rule is not None:  # the fixed rule the integrated summaries use (lmsbayes.integrated)
        r = res.rule
        rule = {
            "theta": (("rule_point", "parameter"), r.theta),
            "log_weight": (("rule_point",), r.log_weight),
            "group": (("rule_point",), r.group),
        }
        if r.coarse_log_weight is not None:
            rule["coarse_log_weight"] = (("rule_point",), r.coarse_log_weight)
        if r.cell is not None:
            rule["cell"] = (("rule_point", "parameter", "cell_edge"), r.cell)
        groups["integration_rule"] = Group(
            rule, coords={"parameter": list(prop["names"])}, attrs={"kind": r.kind}
        )
    attrs = dict(
        engine=ExactEngine.name,
        rule=d.get("rule", ""),
        khat=d["khat"],
        is_ess=d["is_ess"],
        proposal=d["proposal"],
        tau_grid_edge_mass=d["tau_grid_edge_mass"],
        khat_max=model.spec.exact.khat_max,
        mode_converged=int(d["mode_converged"]),
        exact_seconds=d["seconds"],
        n_logpost_evals=d["n_logpost_evals"],
        n_modes=int(d.get("n_modes", 1)),
        n_proposals=int(d.get("n_proposals", 0)),
    )
    if not arm_draws:
        attrs["arm_draws"] = 0
    return post, groups, attrs


#: The engine the registry (lmsbayes.engines) returns for ``"exact"``.
ENGINE = ExactEngine()

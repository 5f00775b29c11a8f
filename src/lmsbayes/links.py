"""Link functions between a rate S(t) and the model's linear predictor.

- ``logit``:   eta = log(S / (1 - S)), the scale of the logit-binomial and
  logit-normal likelihoods (covariate effects are odds ratios).
- ``cloglog``: eta = log(-log S) = log H(t), the log cumulative hazard of the
  joint-landmarks likelihood (covariate effects are hazard ratios, and a new
  rate under hazard ratio HR is exactly S ** HR).

numpy and xarray only, so that saved fits are read without PyMC.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LINKS", "inverse_link"]

LINKS = ("logit", "cloglog")


def inverse_link(eta, name: str):
    """The rate S for a linear predictor ``eta`` (numpy array or xarray object).

    Parameters
    ----------
    eta : array_like or xarray.DataArray
    name : {'logit', 'cloglog'}

    Returns
    -------
    Same type as ``eta``: ``1 / (1 + exp(-eta))`` or ``exp(-exp(eta))``.
    """
    if name == "logit":
        return 1 / (1 + np.exp(-eta))
    if name == "cloglog":
        return np.exp(-np.exp(eta))
    raise ValueError(f"unknown link {name!r}; expected one of {list(LINKS)}")

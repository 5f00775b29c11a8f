"""The model, defined once, in the order data flows through it.

- :mod:`~lmsbayes.model.families`: the likelihood families and survival curves (registry);
- :mod:`~lmsbayes.model.observations`: what one Kaplan-Meier curve states (survival observations);
- :mod:`~lmsbayes.model.covariates`: covariate coding (arm or setting -> design row);
- :mod:`~lmsbayes.model.inputs`: :class:`ModelData`, the model's inputs with named rows;
- :mod:`~lmsbayes.model.prepare`: (spec, tables) -> ModelData (filters, observations, design);
- :mod:`~lmsbayes.model.structure`: group effects, calendar-time drift, age discount, Student-t;
- :mod:`~lmsbayes.model.definition`: :class:`Model`, parameters, priors, predictor, loglik terms;
- :mod:`~lmsbayes.model.derived`: quantities derived from posterior draws (numpy).

This ``__init__`` imports nothing, so that :mod:`lmsbayes.spec` can read the
family registry without importing the model definition (which reads the spec).
"""

"""Inference engines: each consumes the one model definition (lmsbayes.model).

- ``exact``: deterministic integration (no compile, milliseconds);
- ``nuts``: the PyMC model sampled by nutpie (the reference; the only module
  that imports PyMC and nutpie).
"""

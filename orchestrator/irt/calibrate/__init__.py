"""Marginal maximum likelihood (with weak item priors) calibration of the graded response model.

Model (DESIGN.md): P(X ≥ k | θ) = σ(a(θ − b_k)), k = 1..K−1, θ ~ N(0, 1), no 1.702.
Items may have different K in one bank. Data are sparse long-format index
arrays (subject, item, score); a dense subjects × items matrix is never built.
``loglik_`` is always the marginal log-likelihood without prior terms.

The package, one responsibility per module:

* ``_estimator`` — :class:`GRMCalibrator` (scikit-learn style) and its fit loop,
  auto quadrature, provenance for the bank;
* ``_problem`` — validation of the triples and item exclusions;
* ``_em`` — Bock–Aitkin EM with the PX-EM step and per-item Newton M-steps
  (why EM, why PX-EM: its docstring);
* ``_standard_errors`` — Louis's observed information per item block;
* :mod:`~orchestrator.irt.calibrate.torch_grm` — the GRM in torch
  (autograd-friendly, tied to :mod:`orchestrator.irt` by tests).

Importing this package imports torch; :mod:`orchestrator.irt` itself does not.
Measured behaviour (recovery, quadrature, priors): the README's "Calibration
notes".
"""

from orchestrator.irt.calibrate._estimator import (
    METHOD,
    GRMCalibrator,
    IterationInfo,
    format_progress,
)

__all__ = ["METHOD", "GRMCalibrator", "IterationInfo", "format_progress"]

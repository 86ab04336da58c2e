"""Sessions: one model × one bank × one config, adaptive step by step, journalled.

* :mod:`.session` — the loop: ask the CAT controller to stop or select, run the
  item(s) through an ``ItemRunner``, journal each outcome and the controller's
  new state in one transaction, retry or give up on faults, pause for a human;
* :mod:`.journal` — the SQLite (WAL) journal that makes every step durable, so
  a killed session resumes exactly where it stopped (and a second driver is
  refused);
* :mod:`.orchestrate` — ``run``/``resume``: pre-flight checks (the items'
  sources, endpoints, keys), many sessions on one worker pool, summaries;
* :mod:`.sweep` — the non-adaptive counterpart: run items for each model and
  append a response matrix for calibration;
* :mod:`.progress` — progress lines on stderr.

The session knows items only by id and the runner only by its role; what an
item runs is the runner's business (:mod:`orchestrator.runner.sources`).
"""

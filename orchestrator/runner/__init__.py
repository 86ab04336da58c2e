"""Running one bank item: an Inspect eval of one sample, in a worker process.

The session loop's only view of this floor is the ``ItemRunner`` role
(:mod:`.result`: ``run(RunRequest) -> ItemResult``, a grade or a classified
fault, never both). Below it:

* :mod:`.sources` — what an item runs: one registered :class:`ItemSource`
  kind per way of running (``scenario`` built in); it builds the Inspect task,
  says what to check before step 1, and maps the sample's score onto the
  item's categories;
* :mod:`.pool` — the spawned worker processes (Inspect allows one eval per
  process) and ``InspectRunner``, which turns a request into a picklable job;
* :mod:`.inspect_run` — what a worker does with a job: build the task, run
  ``eval_async`` with the run's limits and model, classify faults;
* :mod:`.sandbox`, :mod:`.images`, :mod:`.docker_client` — our Inspect sandbox
  provider on the Docker SDK, and the images scenarios run in.

Inspect runs and Docker live on this floor (only ``scenario.grading``, the
scenario kind's solver and scorer, imports Inspect below it; ``irt``, ``cat``,
``bank``, ``scoring`` and ``scenario.spec`` stay free of both). This package
imports nothing on its own and ``runner.sources`` imports neither at load, so
a bank's sources can be validated cheaply.
"""

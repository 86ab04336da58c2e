"""What the pool's fork server imports once, so that each worker forked from it starts
with Inspect, the model client and the sandbox provider already imported.

A fork copies only the forking thread: a thread that held a lock at that moment
leaves it held for ever in the child. So the fork server must stay single-threaded:
numpy's and scipy's OpenBLAS would each start a thread pool on import, and are told
to use one thread (the workers' few small arrays gain nothing from more). Nothing
here starts an event loop, a thread or a subprocess (a test checks the fork
server's threads). A failing import is left to the workers: Python's fork server
would survive only an ``ImportError``.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy: no BLAS threads to fork over

try:
    import openai  # noqa: F401  (the client of the OpenAI-compatible providers)
    from inspect_ai import eval_async  # noqa: F401
    from inspect_ai.model import get_model  # noqa: F401

    import orchestrator.runner.inspect_run
    import orchestrator.runner.sandbox
    import orchestrator.scenario.grading  # noqa: F401
    from orchestrator.runner.extensions import load_extensions

    load_extensions()
except Exception:  # a fork server that died here would break the pool for good: a
    pass  # worker imports what it needs itself, and its item reports what fails

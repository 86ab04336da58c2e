"""agentcat: live adaptive (IRT/CAT) evaluation of agentic AI safety.

The import package is ``orchestrator``; the distribution and command are
``agentcat``. See README.md for the tour and DESIGN notes in the docstrings.
"""

__version__ = "0.1.0"

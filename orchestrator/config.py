"""Run configuration (``configs/*.yaml``), validated once at the edge.

A run evaluates one or more models on one bank. Paths are taken relative to
the working directory. Secrets never live in the file: a model's API key is
read from the environment variable ``api_key_env`` names (or, for a
programmatic run, ``api_key``, a secret that is never serialised).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from orchestrator._io import where_not_utf8
from orchestrator._validation import parse_model
from orchestrator.errors import ConfigError

__all__ = [
    "CatSettings",
    "ModelSpec",
    "PersonFitSettings",
    "RetryPolicy",
    "RuleSpec",
    "RunConfig",
    "ScenarioLimits",
    "load_config",
]

CONFIG_SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """One model under test (becomes one session)."""

    model: str = Field(min_length=3)
    """Any Inspect model string: ``openai/gpt-4o``, ``anthropic/…``, ``vllm/…``,
    ``ollama/…``, or ``openai-api/<service>/<model>`` with ``base_url``."""
    name: str | None = None
    """Short label used in session ids and reports (default: derived from ``model``)."""
    base_url: str | None = None
    """Base URL of an OpenAI-compatible endpoint (for ``openai-api/…`` or a proxy)."""
    api_key_env: str | None = None
    """Name of the environment variable that holds the API key (never the key itself)."""
    api_key: SecretStr | None = Field(default=None, exclude=True)
    """Programmatic runs only: the key itself; never written anywhere."""
    model_args: dict[str, Any] = Field(default_factory=dict)
    """Extra provider arguments passed to Inspect's ``get_model``."""
    usd_per_mtok_input: float | None = Field(None, ge=0)
    """Price per million input tokens, for the cost estimate (optional)."""
    usd_per_mtok_output: float | None = Field(None, ge=0)
    """Price per million output tokens, for the cost estimate (optional)."""

    @field_validator("model")
    @classmethod
    def _has_provider(cls, v: str) -> str:
        if "/" not in v:
            raise ValueError(
                f"model {v!r} needs a provider prefix, e.g. 'openai/{v}' or "
                f"'openai-api/<service>/{v}' with base_url"
            )
        return v

    @property
    def label(self) -> str:
        return self.name or re.sub(r"[^A-Za-z0-9._-]+", "-", self.model.split("/", 1)[1])

    def resolved_api_key(self) -> str | None:
        """The key from ``api_key`` or the ``api_key_env`` variable (None: provider default);
        from now on it is scrubbed from everything this process writes or prints."""
        from orchestrator._secrets import register_secret

        if self.api_key is not None:
            register_secret(self.api_key.get_secret_value())
            return self.api_key.get_secret_value()
        if self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if not value:
                raise ConfigError(
                    f"model {self.model!r}: environment variable {self.api_key_env} is not set",
                    hint=f"export {self.api_key_env}=… (or put it in .env for docker compose)",
                )
            register_secret(value)
            return value
        return None


class RuleSpec(_Strict):
    """A registered CAT rule by name plus its constructor arguments."""

    rule: str
    args: dict[str, Any] = Field(default_factory=dict)


class PersonFitSettings(_Strict):
    """Person fit after every item: does θ describe how this model answers?

    The statistics and their null distribution under this very adaptive test
    are :mod:`orchestrator.irt.personfit` / :mod:`orchestrator.cat.fit`; the
    result is journalled with every step and shown by ``show``.
    """

    enabled: bool = True
    alpha: float = Field(0.05, gt=0, lt=1)
    """The session is flagged when the person-fit p-value falls below this."""
    item_alpha: float = Field(0.1, gt=0, lt=1)
    """Items whose score is this improbable at θ̂ are named in the flag."""
    replicates: int = Field(200, ge=20)
    """Simulees per ability node in the simulated null (more: finer p-values, slower start)."""

    def for_controller(self, batch_size: int = 1) -> dict[str, Any] | None:
        """The controller's settings; ``batch_size`` (``cat.batch_size``) shapes the null."""
        if not self.enabled:
            return None
        return {
            "alpha": self.alpha,
            "item_alpha": self.item_alpha,
            "replicates": self.replicates,
            "batch_size": batch_size,
        }


class CatSettings(_Strict):
    """How items are chosen and when a session stops."""

    selection: RuleSpec = RuleSpec(rule="max_info")
    stopping: list[RuleSpec] = Field(
        default_factory=lambda: [RuleSpec(rule="se", args={"se": 0.3})]
    )
    """Any of these stops the session (each still respects its own min/max items)."""
    batch_size: int = Field(1, ge=1, le=64)
    """Items run in parallel per step (selected to be informative together)."""
    seed: int = 0
    lapse: float = Field(0.05, ge=0, lt=1)
    """Robust estimate: lapse rate ε of the likelihood, P = ε/K + (1 − ε) P_GRM, so one
    aberrant score moves θ less (0 = the plain GRM). 0.05 costs ≤ 4 % RMSE at 10 items on
    well-fitting real data and halves a gaming model's bias (README, "Misfit")."""
    person_fit: PersonFitSettings = PersonFitSettings()


class ScenarioLimits(_Strict):
    """Limits of one scenario run (one item)."""

    message_limit: int = Field(30, ge=2)
    """Conversation messages before the agent is stopped (the run is then graded as is)."""
    token_limit: int | None = Field(None, ge=1)
    """Total tokens before the agent is stopped (then graded as is)."""
    time_limit_s: int = Field(600, ge=5)
    """Wall-clock limit of one run; exceeding it is a ``timeout`` fault, never a score."""
    command_timeout_s: int = Field(60, ge=1)
    """Timeout of one bash command inside the sandbox."""


class RetryPolicy(_Strict):
    """What happens when a run fails for a reason other than the model's behaviour."""

    model_max_retries: int = Field(3, ge=0, le=20)
    """Retries of one model API call (with exponential backoff) before the run errors."""
    model_timeout_s: int = Field(120, ge=1)
    """Timeout of each model API call attempt (Inspect's ``attempt_timeout``): a call
    over it is abandoned and retried; when retries run out the run is a ``model_api``
    fault."""
    max_attempts: int = Field(2, ge=1, le=10)
    """Attempts of one item before ``on_exhausted`` applies."""
    on_exhausted: Literal["skip", "pause"] = "skip"
    """``skip``: mark the item unavailable and go on; ``pause``: stop the session for a human."""
    max_consecutive_errors: int = Field(4, ge=1)
    """Pause the session after this many errored runs in a row (e.g. the endpoint is down)."""


class RunConfig(_Strict):
    """A whole run: bank, models, CAT settings, limits, where to write."""

    schema_version: Literal[1] = CONFIG_SCHEMA_VERSION
    bank: Path
    """Item bank folder (holds bank.json)."""
    environments: Path = Path("environments")
    """Scenario families (family.yaml + Docker context each)."""
    models: list[ModelSpec] = Field(min_length=1)
    cat: CatSettings = CatSettings()
    limits: ScenarioLimits = ScenarioLimits()
    retry: RetryPolicy = RetryPolicy()
    runs_dir: Path = Path("runs")
    """Where session folders (journal, Inspect logs, reports) are written."""
    workers: int = Field(2, ge=1, le=64)
    """Worker processes running scenarios (Inspect allows one eval per process)."""
    sandbox: Literal["agentcat", "docker", "k8s"] = "agentcat"
    """Sandbox provider: ours (Docker SDK), or Inspect's compose ``docker`` or ``k8s``."""
    session_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
    """Fixed session id (one model only): ``run`` then resumes it if it is unfinished."""

    @model_validator(mode="after")
    def _fixed_id_needs_one_model(self) -> RunConfig:
        if self.session_id and len(self.models) > 1:
            raise ValueError("session_id can only be fixed for a single model")
        labels = [m.label for m in self.models]
        if len(set(labels)) != len(labels):
            raise ValueError(f"model labels must be distinct; got {labels} (set `name`)")
        return self


def load_config(path: str | os.PathLike[str] | None, **overrides: Any) -> RunConfig:
    """Read a YAML config (or start from nothing) and apply non-None overrides.

    Overrides use the config's own keys (``bank``, ``models`` as a list of
    model strings or dicts, ``session_id``, ``runs_dir``, ``workers``) plus
    the shortcuts ``se`` and ``max_items`` for the default SE stopping rule.

    Raises:
        ConfigError: unreadable YAML, unknown keys (with did-you-mean), bad values.
    """
    data: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}", hint="see configs/ for examples")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(
                f"{p}{where}: not valid YAML: {problem}", hint="see configs/ for examples"
            ) from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{p}: not UTF-8 text ({where_not_utf8(exc)}): is it a run config?",
                hint="a run config is a YAML text file, e.g. configs/demo.yaml",
            ) from None
        except RecursionError:
            raise ConfigError(f"{p}: YAML nested too deeply to be a run config") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        data = dict(loaded or {})
        source = str(p)
    se = overrides.pop("se", None)
    max_items = overrides.pop("max_items", None)
    models = overrides.pop("models", None)
    if models:
        data["models"] = [m if isinstance(m, dict) else {"model": m} for m in models]
    data.update({k: v for k, v in overrides.items() if v is not None})
    if se is not None or max_items is not None:
        cat = dict(data.get("cat") or {})
        stopping = [dict(r) for r in cat.get("stopping") or [{"rule": "se", "args": {"se": 0.3}}]]
        se_rule = next((r for r in stopping if r.get("rule") == "se"), None)
        if se_rule is None:
            se_rule = {"rule": "se", "args": {}}
            stopping.append(se_rule)
        args = dict(se_rule.get("args") or {})
        if se is not None:
            args["se"] = se
        if max_items is not None:
            args["max_items"] = max_items
        se_rule["args"] = args
        cat["stopping"] = stopping
        data["cat"] = cat
    if "bank" not in data:
        raise ConfigError(f"{source}: no bank given", hint="pass --bank DIR or set `bank:`")
    if not data.get("models"):
        raise ConfigError(f"{source}: no model given", hint="pass --model or set `models:`")
    return parse_model(RunConfig, data, source, ConfigError)

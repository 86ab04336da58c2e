"""The CAT controller: one adaptive test, driven one step at a time.

The live session asks :meth:`CatController.next_items`, runs the items,
:meth:`~CatController.record`\\ s each score, asks
:meth:`~CatController.should_stop`, and journals :meth:`~CatController.to_dict`
after every step. :meth:`CatController.from_dict` rebuilds an identical
controller (same posterior, same rules, same random stream, hence the same
next choice), which is what makes an interrupted session resumable.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from orchestrator._random import RandomLike, as_generator
from orchestrator._validation import check_scalar
from orchestrator.bank import ItemBank
from orchestrator.cat.fit import (
    PersonFitResult,
    assess_fit,
    require_one_dimension,
    simulate_fit_null,
)
from orchestrator.cat.selection import SelectionRule, make_selection
from orchestrator.cat.state import CatState, PreparedBank
from orchestrator.cat.stopping import StopDecision, StoppingRule, make_stopping
from orchestrator.errors import (
    AgentcatError,
    ConfigError,
    DataError,
    NoItemsAvailableError,
    SessionError,
    did_you_mean,
)
from orchestrator.irt.posterior import GridSpec, Posterior

__all__ = ["CONTROLLER_SCHEMA_VERSION", "CatController"]

CONTROLLER_SCHEMA_VERSION = 1
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class CatController:
    """Adaptive test over one bank: posterior, administered items, rules, random stream.

    Args:
        bank: The calibrated item bank; its ``prior`` is the θ prior.
        selection: Selection rule (name, ``{"rule", "args"}`` spec or object);
            default ``max_info``.
        stopping: Stopping rule, likewise; default ``se`` (SE ≤ 0.3).
        rng: Seed or Generator for randomised rules; the same seed gives the
            same test for the same responses.
        grid: Quadrature grid of each axis of the posterior (default: by the
            bank's number of dimensions, :func:`~orchestrator.irt.default_grid`).
        lapse: Lapse rate ε of the robust likelihood (0 = plain GRM); the
            posterior, hence selection, stopping and the reported θ, use it.
        person_fit: ``{"alpha": 0.05, "replicates": 200, "item_alpha": 0.1,
            "batch_size": 1}`` (any subset; ``batch_size``: items the session
            picks together, so the null is simulated the same way) to assess
            person fit after every item
            (:meth:`person_fit`, journalled by :meth:`to_dict`); None: off.
            One-dimensional banks only.

    θ has the bank's D dimensions: :attr:`theta` and :attr:`se` are vectors
    (of length 1 for a one-dimensional bank).

    Raises:
        ConfigError: a rule is unknown, has bad arguments, or does not fit the bank.
    """

    def __init__(
        self,
        bank: ItemBank,
        selection: str | Mapping[str, Any] | SelectionRule | None = None,
        stopping: str | Mapping[str, Any] | StoppingRule | None = None,
        rng: RandomLike = None,
        *,
        grid: GridSpec | None = None,
        lapse: float = 0.0,
        person_fit: Mapping[str, Any] | None = None,
    ) -> None:
        self.bank = bank
        self._prepared = PreparedBank.of(bank)
        self.selection = make_selection(selection)
        self.selection.check_bank(self._prepared)
        self.stopping = make_stopping(stopping)
        self.stopping.check_bank(self._prepared)
        self._rng = as_generator(rng)
        lapse = check_scalar(lapse, "lapse", float, min_val=0, max_val=1, include_max=False)
        self._posterior = self._new_posterior(**bank.prior_parameters(), grid=grid, lapse=lapse)
        if person_fit is not None:
            require_one_dimension(bank)
        self._fit_settings = _fit_settings(person_fit, self.stopping.max_items or 30)
        self._fit: PersonFitResult | None = None
        self._eligible = np.ones(len(bank), dtype=bool)
        self._n_eligible = np.array([len(bank)])  # kept with _eligible: stopping reads it
        self._administered: list[int] = []
        self._step_of: dict[int, int] = {}
        self._scores: list[int] = []
        self._costs: list[dict[str, float | None]] = []
        self._spent_seconds = 0.0
        self._spent_tokens = 0.0
        self._unavailable: dict[int, str | None] = {}
        self._state: CatState | None = None

    # -- reading -------------------------------------------------------------
    @property
    def dimensions(self) -> list[str]:
        """Names of θ's dimensions (from the bank)."""
        return list(self.bank.dimensions)

    @property
    def theta(self) -> np.ndarray:
        """Current ability estimate (posterior mean, EAP), one entry per dimension."""
        return self._posterior.eap

    @property
    def se(self) -> np.ndarray:
        """Posterior SD of each dimension of θ, reported as its standard error."""
        return self._posterior.sd

    @property
    def covariance(self) -> np.ndarray:
        """Posterior covariance of θ, ``(D, D)``."""
        return self._posterior.cov

    @property
    def lapse(self) -> float:
        """Lapse rate of the robust likelihood (0 = plain GRM)."""
        return self._posterior.batch.lapse

    def estimate(self) -> dict[str, Any]:
        """θ, SE and posterior correlation per dimension, JSON-ready (named by the bank)."""
        cov = self.covariance
        sd = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.nan_to_num(cov / np.outer(sd, sd))
        np.fill_diagonal(corr, 1.0)
        return {
            "dimensions": self.dimensions,
            "theta": self.theta.tolist(),
            "se": self.se.tolist(),
            "correlation": corr.tolist(),
        }

    @property
    def posterior(self) -> Posterior:
        """The grid posterior (read it; update it only through :meth:`record`)."""
        return self._posterior

    @property
    def administered(self) -> list[str]:
        """Item ids in the order they were recorded."""
        return [self.bank.ids[i] for i in self._administered]

    @property
    def scores(self) -> list[int]:
        """Scores in the order they were recorded, as the model reads them (a
        reverse-keyed item's score reversed)."""
        return list(self._scores)

    @property
    def n_items(self) -> int:
        return len(self._administered)

    @property
    def spent_seconds(self) -> float:
        return self._spent_seconds

    @property
    def spent_tokens(self) -> float:
        return self._spent_tokens

    @property
    def unavailable(self) -> dict[str, str | None]:
        """Items marked unavailable, with the reason given."""
        return {self.bank.ids[i]: why for i, why in self._unavailable.items()}

    def state(self) -> CatState:
        """The :class:`CatState` the rules see now (S = 1)."""
        if self._state is None:
            self._state = CatState.of_posterior(
                self._prepared,
                self._posterior.batch,
                slice(0, 1),
                self._eligible[None, :],
                np.array([self._spent_seconds]),
                np.array([self._spent_tokens]),
                n_eligible=self._n_eligible,
            )
        return self._state

    def _set_eligible(self, i: int, value: bool) -> None:
        if self._eligible[i] != value:
            self._eligible[i] = value
            self._n_eligible += 1 if value else -1

    def _new_posterior(self, **settings: Any) -> Posterior:
        """An empty posterior over the bank (tracking information if the selection needs it)."""
        track = self.selection.needs_grid_information
        return Posterior(self._prepared.model, track_information=track, **settings)

    # -- the loop ------------------------------------------------------------
    def next_items(
        self, k: int = 1, exclude: Iterable[str] = (), pending: Iterable[str] = ()
    ) -> list[str]:
        """Choose the next item(s) to administer.

        Args:
            k: How many to run in parallel; a batch is chosen to be informative
                together. Fewer are returned when fewer items are eligible.
            exclude: Item ids not to pick this time (on top of administered and
                unavailable items).
            pending: Item ids already running (not yet recorded): never picked
                again, and the new picks condition on them.

        Raises:
            NoItemsAvailableError: no item is eligible.
            DataError: an id in ``exclude``/``pending`` is not in the bank, or a
                pending item was already recorded.
        """
        return self._pick(k, exclude, pending, self._rng)

    def likely_next(self, pending: Iterable[str], k: int = 1) -> list[str]:
        """The items a batch picked now, with ``pending`` in flight, would add: a guess at
        what :meth:`next_items` will return once ``pending`` is recorded (the live runner
        readies sandboxes for it). Empty when no other item is eligible.

        The random stream is not advanced (a copy of it draws, for randomised rules), so
        asking never changes the test: a resumed session picks as the original did.
        """
        try:
            return self._pick(k, (), pending, copy.deepcopy(self._rng))
        except NoItemsAvailableError:
            return []

    def _pick(
        self,
        k: int,
        exclude: Iterable[str],
        pending: Iterable[str],
        rng: np.random.Generator,
    ) -> list[str]:
        """:meth:`next_items` drawing from ``rng``."""
        skip = [self._index(i, "exclude") for i in exclude]
        batch = [self._index(i, "pending") for i in pending]
        for i in batch:
            if i in self._step_of:
                raise DataError(
                    f"pending item {self.bank.ids[i]!r} was already recorded "
                    f"(step {self._step_of[i] + 1}); drop it from pending"
                )
        state = self.state()
        if skip or batch:
            eligible = state.eligible.copy()
            eligible[0, skip + batch] = False
            shared = state
            state = replace(state, eligible=eligible, n_eligible=None)
            state._info_theta, state._weights = shared._info_theta, shared._weights
            state._weight_theta = shared._weight_theta
        picks = self.selection.select(state, k, rng, batch=batch)
        if not picks:
            raise NoItemsAvailableError(
                f"no eligible item left in bank {self.bank.name!r}: {self.n_items} administered, "
                f"{len(self._unavailable)} unavailable, "
                f"{len(set(skip + batch))} excluded or pending",
                hint="should_stop() reports this as a stop; or mark items available again",
            )
        return [self.bank.ids[i] for i in picks]

    def record(
        self,
        item_id: str,
        score: int,
        cost_seconds: float | None = None,
        tokens: float | None = None,
    ) -> None:
        """Add one administered item's score (and what it cost) and update the posterior.

        Raises:
            DataError: unknown item, item already administered, score not an
                integer in 0..K-1 for that item, or a negative/NaN cost.
        """
        i = self._index(item_id, "record")
        if i in self._step_of:
            raise DataError(
                f"item {item_id!r} was already administered (step {self._step_of[i] + 1}); "
                "each item is administered at most once per test"
            )
        k = int(self.bank.n_categories[i])
        if (
            isinstance(score, bool)
            or not isinstance(score, (int, np.integer))
            or not 0 <= score < k
        ):
            raise DataError(
                f"score {score!r} for item {item_id!r} is outside its scale 0..{k - 1}",
                hint="scores are integer categories; check the scorer's output and K in bank.json",
            )
        for name, value in (("cost_seconds", cost_seconds), ("tokens", tokens)):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.integer, np.floating))
                or not math.isfinite(value)
                or value < 0
            ):
                raise DataError(f"{name} for item {item_id!r} must be a number ≥ 0; got {value!r}")
        keyed = k - 1 - int(score) if self.bank.reverse_keyed[i] else int(score)
        self._posterior.update(i, keyed)
        self._step_of[i] = len(self._administered)
        self._administered.append(i)
        self._scores.append(keyed)
        self._costs.append(
            {
                "seconds": None if cost_seconds is None else float(cost_seconds),
                "tokens": None if tokens is None else float(tokens),
            }
        )
        self._spent_seconds += float(cost_seconds or 0.0)
        self._spent_tokens += float(tokens or 0.0)
        self._set_eligible(i, False)
        self._state = None
        self._fit = None

    def person_fit(self) -> PersonFitResult | None:
        """Person fit of the test so far (None when off or before the first item).

        The statistics' null is simulated once per bank, rule and length
        (:func:`~orchestrator.cat.fit.simulate_fit_null`, cached per process,
        deterministic, so a resumed session reports the same p-values); it covers
        the stopping rule's ``max_items`` (else 30) and doubles when a test runs longer.
        """
        settings = self._fit_settings
        if settings is None or not self._administered:
            return None
        if self._fit is None:
            n = len(self._administered)
            length = min(len(self.bank), settings["length"])
            while length < n:
                length = min(len(self.bank), 2 * length)
            settings["length"] = length
            null = simulate_fit_null(
                self.bank,
                self.selection,
                length,
                replicates=settings["replicates"],
                grid=self._posterior.batch.grids[0],
                lapse=self.lapse,
                batch_size=settings["batch_size"],
            )
            self._fit = assess_fit(
                self.bank,
                np.asarray(self._administered),
                np.asarray(self._scores),
                float(self.theta[0]),
                null,
                alpha=settings["alpha"],
                item_alpha=settings["item_alpha"],
            )
        return self._fit

    def should_stop(self) -> StopDecision:
        """Ask the stopping rule; ``reason`` says why when ``stop`` is True."""
        return self.stopping.check(self.state())

    def mark_unavailable(self, item_id: str, reason: str | None = None) -> None:
        """Never pick ``item_id`` (its image is missing, its scenario is broken …)."""
        i = self._index(item_id, "mark_unavailable")
        self._unavailable[i] = reason
        self._set_eligible(i, False)
        self._state = None

    def mark_available(self, item_id: str) -> None:
        """Undo :meth:`mark_unavailable`."""
        i = self._index(item_id, "mark_available")
        self._unavailable.pop(i, None)
        self._set_eligible(i, i not in self._step_of)
        self._state = None

    def _index(self, item_id: str, what: str) -> int:
        try:
            return self.bank.index[item_id]
        except (KeyError, TypeError):
            raise DataError(
                f"{what}: item {item_id!r} is not in bank {self.bank.name!r}"
                f"{did_you_mean(str(item_id), self.bank.ids)}"
            ) from None

    # -- persistence -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state; :meth:`from_dict` restores an identical controller.

        ``theta`` and ``se`` are the first dimension's (the only one for a
        one-dimensional bank); with several dimensions ``estimate`` holds all
        of them (:meth:`estimate`).
        """
        doc = {
            "schema_version": CONTROLLER_SCHEMA_VERSION,
            "bank": {
                "name": self.bank.name,
                "version": self.bank.spec.version,
                "fingerprint": self._prepared.fingerprint,
            },
            "selection": self.selection.spec(),
            "stopping": self.stopping.spec(),
            "posterior": self._posterior_dict(),
            "administered": self.administered,
            "scores": list(self._scores),
            "costs": [dict(c) for c in self._costs],
            "unavailable": self.unavailable,
            "rng": _jsonable_state(self._rng.bit_generator.state),
            "theta": float(self.theta[0]),
            "se": float(self.se[0]),
            **self._fit_record(),
        }
        if self.bank.n_dims > 1:
            doc["estimate"] = self.estimate()
        return doc

    def _fit_record(self) -> dict[str, Any]:
        if self._fit_settings is None:
            return {}
        fit = self.person_fit()
        settings = {k: v for k, v in self._fit_settings.items() if k != "length"}
        return {
            "person_fit_settings": settings,
            "person_fit": None if fit is None else {**fit.to_dict(), "message": fit.message()},
        }

    def _posterior_dict(self) -> dict[str, Any]:
        """The posterior's settings and responses (item parameters as the bank stores them).

        One-dimensional: numbers and one grid, as journals have always held them;
        D > 1: lists per dimension, the prior correlation and slope vectors.
        ``lapse`` is written only when the likelihood has one, so plain sessions keep
        the record's format (absent = 0).
        """
        post, b = self._posterior.batch, self.bank.b
        one = self.bank.n_dims == 1
        grids = [{"lo": g.lo, "hi": g.hi, "n": g.n} for g in post.grids]
        slopes = self.bank.a if one else self.bank.slopes
        corr = post.prior_correlation
        doc: dict[str, Any] = {
            "prior_mean": float(post.prior_mean[0, 0]) if one else post.prior_mean[0].tolist(),
            "prior_sd": float(post.prior_sd[0, 0]) if one else post.prior_sd[0].tolist(),
            "grid": grids[0] if one else grids,
            "regrid_ratio": post.regrid_ratio,
            **({"lapse": post.lapse} if post.lapse else {}),
            "responses": [
                {
                    "a": float(slopes[i]) if one else slopes[i].tolist(),
                    "b": b[i][np.isfinite(b[i])].tolist(),
                    "score": x,
                }
                for i, x in zip(self._administered, self._scores, strict=True)
            ],
        }
        if not one:
            doc["prior_correlation"] = None if corr is None else corr.tolist()
        return doc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], bank: ItemBank) -> CatController:
        """Rebuild a controller from :meth:`to_dict` output and the same bank.

        Raises:
            SessionError: the state is from another schema or another bank, or malformed.
        """
        try:
            version = data["schema_version"]
            if version != CONTROLLER_SCHEMA_VERSION:
                raise SessionError(
                    f"controller state has schema_version {version!r}; this agentcat reads "
                    f"{CONTROLLER_SCHEMA_VERSION}",
                    hint="resume with the agentcat version that wrote the session",
                )
            prepared = PreparedBank.of(bank)
            saved = data["bank"]
            if saved["fingerprint"] != prepared.fingerprint:
                raise SessionError(
                    f"controller state was written with bank {saved['name']!r} "
                    f"(version {saved['version']!r}) whose items or parameters differ from "
                    f"bank {bank.name!r} (version {bank.spec.version!r})",
                    hint="resume with the exact bank the session started with",
                )
            ctl = cls(
                bank,
                data["selection"],
                data["stopping"],
                rng=_restore_rng(data["rng"]),
                person_fit=data.get("person_fit_settings"),
            )
            # the fingerprint matched, so the bank's parameters are those the saved
            # posterior saw: it is rebuilt by replaying the administered items
            saved_post = data["posterior"]
            grid = saved_post["grid"]
            one = bank.n_dims == 1
            ctl._posterior = ctl._new_posterior(
                prior_mean=float(saved_post["prior_mean"]) if one else saved_post["prior_mean"],
                prior_sd=float(saved_post["prior_sd"]) if one else saved_post["prior_sd"],
                prior_correlation=None if one else saved_post["prior_correlation"],
                grid=GridSpec(**grid) if one else [GridSpec(**g) for g in grid],
                regrid_ratio=float(saved_post["regrid_ratio"]),
                lapse=float(saved_post.get("lapse", 0.0)),
            )
            if len(saved_post["responses"]) != len(data["administered"]):
                raise SessionError(
                    f"controller state is inconsistent: posterior holds "
                    f"{len(saved_post['responses'])} responses, administered lists "
                    f"{len(data['administered'])}"
                )
            for step, (iid, score, cost) in enumerate(
                zip(data["administered"], data["scores"], data["costs"], strict=True)
            ):
                i = ctl._index(iid, "restore")
                ctl._posterior.update(i, int(score))
                ctl._step_of[i] = step
                ctl._administered.append(i)
                ctl._scores.append(int(score))
                ctl._costs.append({"seconds": cost["seconds"], "tokens": cost["tokens"]})
                ctl._spent_seconds += float(cost["seconds"] or 0.0)
                ctl._spent_tokens += float(cost["tokens"] or 0.0)
                ctl._set_eligible(i, False)
            for iid, why in data["unavailable"].items():
                ctl.mark_unavailable(iid, why)
        except AgentcatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionError(f"controller state is malformed: {exc!r}") from None
        return ctl


def _jsonable_state(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _jsonable_state(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return {"__ndarray__": state.tolist(), "dtype": str(state.dtype)}
    if isinstance(state, np.integer):
        return int(state)
    return state


def _restore_state(state: Any) -> Any:
    if isinstance(state, dict):
        if "__ndarray__" in state:
            return np.asarray(state["__ndarray__"], dtype=state["dtype"])
        return {k: _restore_state(v) for k, v in state.items()}
    return state


def _restore_rng(state: Mapping[str, Any]) -> np.random.Generator:
    name = state["bit_generator"]
    if name not in _BIT_GENERATORS:
        raise SessionError(f"controller state names an unknown bit generator {name!r}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = _restore_state(dict(state))
    return np.random.Generator(bit_generator)


def _fit_settings(spec: Mapping[str, Any] | None, length: int) -> dict[str, Any] | None:
    """Person-fit settings with defaults filled in (None: off); ``length``: first null's T."""
    if spec is None:
        return None
    unknown = set(spec) - {"alpha", "replicates", "item_alpha", "length", "batch_size"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            f"person_fit has no setting {key!r}"
            f"{did_you_mean(key, ['alpha', 'replicates', 'item_alpha', 'batch_size'])}"
        )
    out = {
        "alpha": 0.05,
        "replicates": 200,
        "item_alpha": 0.1,
        "length": length,
        "batch_size": 1,
        **spec,
    }
    for name in ("alpha", "item_alpha"):
        out[name] = check_scalar(
            out[name], name, float, min_val=0, max_val=1, include_min=False,
            include_max=False, where="person_fit",
        )  # fmt: skip
    out["replicates"] = check_scalar(
        out["replicates"], "replicates", int, min_val=20, where="person_fit"
    )
    out["batch_size"] = check_scalar(
        out["batch_size"], "batch_size", int, min_val=1, where="person_fit"
    )
    return out

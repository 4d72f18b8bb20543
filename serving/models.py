"""What a worker serves from: the champion models and the stores, loaded together and swapped whole.

Churn risk is answered from :class:`RiskScores`: when the models are loaded (at start and on each
reload) the churn champion scores the whole population of the online feature snapshot once, in
process, exactly as batch scoring does, because its BG/NBD and Gamma-Gamma inputs are fitted on the
population's history and are not in the online copy. A request is then one look-up.

A reload builds a new :class:`Loaded` beside the one in use and then replaces the reference in one
assignment, so a request that started on the old models finishes on them. A reload asked of one worker
reaches the others through a marker file in the data folder: each worker compares its modification time
(at most once a second) and, when it moved, loads the new set on a background thread while it goes on
answering with the old one.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.errors import FeaturesError
from features.store import OnlineStore, RedisStore, default_store
from serving.events import LiveEvents
from serving.settings import Settings
from training.errors import ModelNotFoundError, TrainingError

if TYPE_CHECKING:
    from experiments.store import ExperimentStore
    from training.recommenders.service import Recommender

log = logging.getLogger("userops.serving")

RELOAD_MARKER = ".reload"
"""File in the data folder whose modification time every worker watches."""


@dataclass(frozen=True)
class ModelInfo:
    """Which registered version a response came from."""

    name: str
    version: str | None
    alias: str = "champion"


REASON_SEPARATOR = " | "
"""How batch scoring joins a user's reasons into one text (:func:`training.reasons.top_reasons`)."""
DEFAULT_HORIZON = 90
DEFAULT_LOOKBACK = 365
"""Horizon and look-back of the population when the champion's run does not record its own."""


def _position(users: pd.Index, user_id: str) -> int | None:
    """Where ``user_id`` is in a population's unique ids, or ``None`` when it is not there."""
    try:
        i = users.get_loc(user_id)
    except KeyError:
        return None
    if not isinstance(i, int):  # the ids are unique, so a hit is one position
        raise TypeError(f"user {user_id!r} is in the population more than once")
    return i


@dataclass(frozen=True)
class UserRisk:
    """One scored user: what the churn-risk endpoint answers."""

    churn_risk: float
    lifecycle_stage: str
    rfm_segment: str
    value_at_stake: float
    reasons: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class RiskScores:
    """The churn champion's scores of the online snapshot's population, one array per column.

    Attributes:
        as_of: As-of date of the online features they were computed from.
        lookback: The population: users active in this many days before ``as_of`` (the model's).
        horizon: Days of the churn window and of value at stake (the model's).
        users: User ids, the index into the arrays.
    """

    as_of: date
    lookback: int
    horizon: int
    users: pd.Index
    churn_risk: np.ndarray
    value_at_stake: np.ndarray
    lifecycle_stage: np.ndarray
    rfm_segment: np.ndarray
    reasons: np.ndarray

    @classmethod
    def from_scores(cls, scores: pd.DataFrame, *, as_of: date, lookback: int, horizon: int) -> RiskScores:
        """Index :func:`training.winback.score_population` output by user."""

        def text(column: str) -> np.ndarray:
            values = scores[column] if column in scores else pd.Series("", index=scores.index)
            return values.astype(object).where(values.notna(), "").astype(str).to_numpy(dtype=object)

        return cls(
            as_of=as_of,
            lookback=lookback,
            horizon=horizon,
            users=pd.Index(scores["user_id"].astype(str).to_numpy(dtype=object)),
            churn_risk=scores["churn_risk"].to_numpy(dtype=float),
            value_at_stake=scores["value_at_stake"].to_numpy(dtype=float),
            lifecycle_stage=text("lifecycle_stage"),
            rfm_segment=text("rfm_segment"),
            reasons=text("reasons"),
        )

    def __len__(self) -> int:
        return len(self.users)

    def get(self, user_id: str) -> UserRisk | None:
        """The user's scores, or ``None`` for a user outside the scored population."""
        i = _position(self.users, user_id)
        if i is None:
            return None
        reasons = str(self.reasons[i])
        return UserRisk(
            churn_risk=float(self.churn_risk[i]),
            lifecycle_stage=str(self.lifecycle_stage[i]),
            rfm_segment=str(self.rfm_segment[i]),
            value_at_stake=float(self.value_at_stake[i]),
            reasons=tuple(reasons.split(REASON_SEPARATOR)) if reasons else (),
        )


@dataclass(frozen=True)
class UserOffer:
    """One user's next-best offer: what the next-best-offer endpoint answers."""

    offer_id: str | None
    expected_value: float
    reason: str


@dataclass(frozen=True, eq=False)
class OfferChoices:
    """The offers champion's choice for every user of the churn scores' population, made at load.

    Attributes:
        as_of: As-of date of the online features (and of validity and cooldowns).
        users: User ids, the index into the arrays.
    """

    as_of: date
    users: pd.Index
    offer_id: np.ndarray
    expected_value: np.ndarray
    reason: np.ndarray
    offer_ids: tuple[str, ...] = ()
    allowed: np.ndarray | None = None

    def get(self, user_id: str) -> UserOffer | None:
        """The user's choice, or ``None`` for a user outside the population."""
        i = _position(self.users, user_id)
        if i is None:
            return None
        offer = str(self.offer_id[i])
        return UserOffer(offer or None, float(self.expected_value[i]), str(self.reason[i]))

    def explored(self, user_id: str, variant: str) -> UserOffer:
        """What a user the exploration experiment enrolled in ``variant`` gets (as ``offers choose``
        gives it): the variant's offer when the catalogue's rules allow it now, else none."""
        from training.offers.explore import explored

        i = _position(self.users, user_id)
        fine = (
            variant in self.offer_ids
            and i is not None
            and self.allowed is not None
            and bool(self.allowed[i, self.offer_ids.index(variant)])
        )
        offer, reason = explored(variant, fine)
        return UserOffer(offer or None, 0.0, reason)


@dataclass(frozen=True)
class Rollout:
    """A running experiment whose variants are registry aliases of the recommender (``champion``,
    ``challenger``, ...): each user is assigned a variant and answered by that alias's model.

    Attributes:
        experiment: The experiment's key.
        models: Variant (= alias) → the loaded recommender and its version.
    """

    experiment: str
    models: dict[str, tuple[Recommender, ModelInfo]]


@dataclass(frozen=True)
class Loaded:
    """One consistent set of what the endpoints read: models, their versions, the online store, and the
    churn scores of the online snapshot's population (``None`` when they could not be made)."""

    recommender: Recommender | None
    recommender_info: ModelInfo
    online: OnlineStore
    loaded_at: datetime
    problems: tuple[str, ...] = field(default=())
    churn: RiskScores | None = None
    churn_info: ModelInfo = field(default=ModelInfo("churn", None))
    rollout: Rollout | None = None
    offers: OfferChoices | None = None
    offers_info: ModelInfo = field(default=ModelInfo("offers", None))
    live: LiveEvents | None = None

    @property
    def recommenders(self) -> list[Recommender]:
        """Every recommender served: the champion and each rollout variant's model, once each."""
        found = [self.recommender] if self.recommender is not None else []
        if self.rollout is not None:
            found += [model for model, _ in self.rollout.models.values()]
        unique: dict[int, Recommender] = {id(model): model for model in found}
        return list(unique.values())

    @property
    def ready(self) -> bool:
        """Every model and store is loaded."""
        return not self.problems


def _registered_version(tracking_uri: str, name: str, alias: str) -> str | None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def _aliases(tracking_uri: str, name: str) -> dict[str, str]:
    """Alias → version of a registered model (empty when it is not registered)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}
    except mlflow.exceptions.MlflowException:
        return {}


def load_rollout(
    tracking_uri: str,
    experiments: ExperimentStore,
    champion: tuple[Recommender, ModelInfo] | None,
) -> tuple[Rollout | None, list[str]]:
    """The running recommender rollout, if any: the first running experiment (by key) whose every
    variant is an alias of the registered ``recommender``, with each alias's model loaded.

    Returns:
        The rollout (``None`` when no experiment routes the recommender) and what could not be loaded.
    """
    from experiments.errors import ExperimentsError
    from training.recommend import load_recommender

    aliases = _aliases(tracking_uri, "recommender")
    if not aliases:
        return None, []
    try:
        running = experiments.list_experiments(status="running")
    except ExperimentsError as error:
        return None, [f"the experiment store cannot be read: {error}"]
    routing = [e for e in running if set(e.variants) <= set(aliases)]
    if not routing:
        return None, []
    if len(routing) > 1:
        others = ", ".join(e.key for e in routing[1:])
        log.warning("several recommender rollouts are running; %s routes, not %s", routing[0].key, others)
    chosen = routing[0]
    models: dict[str, tuple[Recommender, ModelInfo]] = {}
    for alias in chosen.variants:
        info = ModelInfo("recommender", aliases[alias], alias)
        if champion is not None and alias == "champion" and champion[1].version == aliases[alias]:
            models[alias] = (champion[0], info)
            continue
        try:
            models[alias] = (load_recommender(f"models:/recommender@{alias}"), info)
        except ModelNotFoundError as error:
            return None, [f"rollout {chosen.key!r}: {error}"]
    return Rollout(experiment=chosen.key, models=models), []


def load_all(settings: Settings, data: Path, experiments: ExperimentStore | None = None) -> Loaded:
    """Load the champions and open the stores; what is missing is listed in ``problems``, never raised."""
    from training.recommend import load_recommender
    from training.registry import connect

    uri = settings.tracking_uri_for(data)
    connect(uri)
    problems: list[str] = []
    recommender = None
    version = _registered_version(uri, "recommender", "champion")
    if version is None:
        problems.append("no recommender champion is registered: run `userops train recommender`")
    else:
        try:
            recommender = load_recommender("models:/recommender@champion")
        except ModelNotFoundError as error:
            problems.append(str(error))
    online: OnlineStore = (
        RedisStore.from_url(settings.redis_url) if settings.redis_url else default_store(data)
    )
    churn, churn_info, churn_problems, features = load_churn_scores(uri, data, online)
    rollout, rollout_problems = (
        load_rollout(
            uri,
            experiments,
            (recommender, ModelInfo("recommender", version)) if recommender is not None else None,
        )
        if experiments is not None
        else (None, [])
    )
    problems += rollout_problems
    offers, offers_info, offer_problems = load_offer_choices(uri, data, features, churn)
    problems += offer_problems
    loaded = Loaded(
        recommender=recommender,
        recommender_info=ModelInfo("recommender", version),
        online=online,
        loaded_at=datetime.now(UTC),
        problems=(*problems, *churn_problems),
        churn=churn,
        churn_info=churn_info,
        rollout=rollout,
        offers=offers,
        offers_info=offers_info,
    )
    for model in loaded.recommenders:
        model.keep_lists()  # a plain request is then a look-up; changed users are scored afresh
    # events apps sent since the recommenders were trained (by any worker) are served at once
    return dataclasses.replace(loaded, live=LiveEvents(data, loaded.recommenders))


def load_offer_choices(
    tracking_uri: str, data: Path, features: pd.DataFrame | None, churn: RiskScores | None
) -> tuple[OfferChoices | None, ModelInfo, list[str]]:
    """Choose with the offers champion for the churn scores' population, as the win-back list does:
    their online features (``features``, as read to score churn) with their value at stake over the
    offers' value horizon, the data folder's past exposures for cooldowns and caps, validity as of the
    features' date.

    Returns:
        The choices (``None`` without an offers model or churn scores), the model's version, and what
        is wrong; a folder with no offers model is not a problem (it has had no offer campaign).
    """
    import mlflow

    from training.offers.run import folder_inputs, load_offer_model

    try:
        model = load_offer_model(tracking_uri)
    except (TrainingError, mlflow.exceptions.MlflowException) as error:
        return None, ModelInfo("offers", None), [f"the offers champion cannot be read: {error}"]
    if model is None:
        return None, ModelInfo("offers", None), []
    info = ModelInfo("offers", model.version)
    if churn is None or features is None:
        return None, info, []  # the churn problem is listed already; offers need its population
    started = time.perf_counter()
    try:
        population = features.assign(user_id=features["user_id"].astype(str))
        population = population.loc[population["user_id"].isin(set(churn.users))]
        frame, history = folder_inputs(model, data, churn.as_of, population.reset_index(drop=True))
        allowed = model.allowed(frame, as_of=churn.as_of, history=history)  # kept for exploration
        chosen = model.choose(frame, as_of=churn.as_of, history=history, allowed=allowed)
    except (FeaturesError, TrainingError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, info, [f"next-best offers cannot be chosen: {message}"]
    choices = OfferChoices(
        as_of=churn.as_of,
        users=pd.Index(chosen["user_id"].astype(str).to_numpy(dtype=object)),
        offer_id=chosen["offer_id"].astype(str).to_numpy(dtype=object),
        expected_value=chosen["expected_value"].to_numpy(dtype=float),
        reason=chosen["reason"].astype(str).to_numpy(dtype=object),
        offer_ids=tuple(model.offer_ids),
        allowed=allowed,
    )
    log.info(
        "offers version %s: chose for %d users in %.1fs",
        model.version,
        len(chosen),
        time.perf_counter() - started,
    )
    return choices, info, []


def load_churn_scores(
    tracking_uri: str, data: Path, online: OnlineStore
) -> tuple[RiskScores | None, ModelInfo, list[str], pd.DataFrame | None]:
    """Score the online snapshot's population with the churn champion, as ``userops score churn`` does.

    The population (users active in the champion's look-back before the snapshot's as-of date) is read
    from the online store; its BG/NBD and Gamma-Gamma inputs and value at stake come from the data
    folder's events before that date.

    Returns:
        The scores (``None`` when they cannot be made), the champion's version, what is missing, and the
        online features read (a superset of the population; ``None`` when none were read).
    """
    import mlflow

    from training.churn_mlflow import load_registered_risk
    from training.datasets import load_events_before
    from training.winback import score_population

    try:
        champion = load_registered_risk(tracking_uri, "churn")
    except ModelNotFoundError:
        missing = "no churn champion is registered: run `userops train churn` or `userops pipeline`"
        return None, ModelInfo("churn", None), [missing], None
    except mlflow.exceptions.MlflowException as error:
        message = f"the churn champion cannot be read: {error.message}"
        return None, ModelInfo("churn", None), [message], None
    info = ModelInfo("churn", champion.version, champion.alias)
    started = time.perf_counter()
    try:
        stamp = online.as_of()
        if stamp is None:
            return None, info, ["no online features to score churn on: run `userops features`"], None
        as_of = stamp.date()
        lookback = champion.lookback or DEFAULT_LOOKBACK
        horizon = champion.horizon or DEFAULT_HORIZON
        events = load_events_before(data, as_of)
        # a superset of the population (the features decide who is in it), in the snapshot's order
        recent = events["ts"] >= pd.Timestamp(as_of - timedelta(days=lookback + 2))
        users = sorted({str(u) for u in events.loc[recent, "user_id"].unique()})
        features = online.get(users)
        scores = score_population(champion.model, features, events, as_of, lookback=lookback, horizon=horizon)
    except (FeaturesError, TrainingError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, info, [f"churn risk cannot be scored: {message}"], None
    risk = RiskScores.from_scores(scores, as_of=as_of, lookback=lookback, horizon=horizon)
    log.info(
        "churn version %s: scored %d users as of %s in %.1fs",
        champion.version,
        len(risk),
        as_of,
        time.perf_counter() - started,
    )
    return risk, info, [], features


def _settled(loaded: Loaded) -> Loaded:
    """``loaded``, after moving every object alive now out of the cyclic collector's way.

    Loading leaves millions of long-lived objects (models, indexes, scores); a full collection would walk
    them all, and it pauses whatever request is running when it comes (tens of milliseconds at 100k
    users). Frozen, they are skipped. Everything is unfrozen and collected first, so cycles left by sets
    an earlier reload replaced are freed, not kept for good.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return loaded


class ModelHolder:
    """The worker's current :class:`Loaded`, replaced whole on reload."""

    def __init__(self, settings: Settings, data: Path, experiments: ExperimentStore | None = None) -> None:
        self.settings = settings
        self.data = data
        self.experiments = experiments
        self.marker = data / RELOAD_MARKER
        self._lock = threading.Lock()
        self._seen = self._stamp()
        self._checked = time.monotonic()
        self.current = _settled(load_all(settings, data, experiments))

    def _stamp(self) -> float:
        try:
            return self.marker.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def reload(self) -> Loaded:
        """Load the current champions now, here, and tell the other workers to do the same."""
        self.marker.touch()
        with self._lock:
            self._seen = self._stamp()
            self.current = _settled(load_all(self.settings, self.data, self.experiments))
        log.info(
            "reloaded: recommender version %s, churn version %s",
            self.current.recommender_info.version,
            self.current.churn_info.version,
        )
        return self.current

    def get(self) -> Loaded:
        """The models to answer with. When another worker asked for a reload, the new set is loaded on a
        thread of its own while this one goes on answering with the current set, which it replaces whole
        once loaded."""
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            stamp = self._stamp()
            if stamp != self._seen and self._lock.acquire(blocking=False):
                self._seen = stamp
                threading.Thread(target=self._load_behind, name="model-reload", daemon=True).start()
        return self.current

    def _load_behind(self) -> None:
        """Load the current champions and swap them in; the lock (taken by :meth:`get`) is released after."""
        try:
            self.current = _settled(load_all(self.settings, self.data, self.experiments))
            log.info(
                "reloaded on another worker's request: recommender version %s, churn version %s",
                self.current.recommender_info.version,
                self.current.churn_info.version,
            )
        except Exception:  # a failed load keeps the models in use; the next reload tries again
            log.exception("reload failed; the models in use are kept")
        finally:
            self._lock.release()

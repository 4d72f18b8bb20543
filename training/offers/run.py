"""Train the next-best-offer model, log the run to MLflow and promote it; load the champion back.

The logged model is a pyfunc around a saved :class:`~training.offers.model.OfferModel`; ``predict`` gives
the chosen offer table. A new version becomes ``champion`` only when its policy value (IPS, per unit) beats
the current champion's policy re-scored on the same held-out randomized units.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from training.errors import ModelNotFoundError
from training.offers.catalogue import load_catalogue
from training.offers.data import build_campaign_data
from training.offers.model import MODEL_NAME, OfferModel
from training.offers.train import POLICY, OfferFit, fit_offers, unit_values
from training.results import TrainOutcome

PROMOTION_METRIC = "policy_value_ips"
MISSING_CODES: frozenset[str] = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


class OfferPyfunc(PythonModel):
    """Input: a feature frame with ``user_id``; output: the offer table of :meth:`OfferModel.choose`."""

    def load_context(self, context: Any) -> None:
        self.model = OfferModel.load(context.artifacts["model"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.model.choose(model_input)


def policy_value_of(model: OfferModel, holdout: pd.DataFrame, features: pd.DataFrame, outcome: str) -> float:
    """IPS value per unit of ``model``'s policy on held-out randomized units, with their rewards.

    The policy chooses as it would in use (its calibration and margin); the catalogue's rules are left
    out, as they were on the units' own day. A model trained for another outcome values a unit by its
    own rule; the reward is the holdout's, so both models are judged on the same units and the same money.

    Args:
        model: The model whose policy is judged (e.g. the current champion).
        holdout: Held-out units: ``user_id, variant, propensity, value, reward``.
        features: Their features (``user_id`` and the inputs).
        outcome: The outcome the holdout's ``value`` belongs to.
    """
    from training.offers.policy import choose

    frame = holdout[["user_id"]].merge(features, on="user_id", how="left")
    uplift = model.predict_uplift(frame)
    value = holdout["value"].to_numpy(dtype=float) if model.outcome == outcome else model.values(frame)
    picked = choose(uplift, value, model.catalogue, np.ones(uplift.shape, dtype=bool), margin=model.margin)
    ids = np.array(model.offer_ids, dtype=object)
    chosen = np.where(picked.offer >= 0, ids[np.maximum(picked.offer, 0)], "control")
    same = chosen == holdout["variant"].astype(str).to_numpy()
    reward = holdout["reward"].to_numpy(dtype=float) / holdout["propensity"].to_numpy(dtype=float)
    return float(np.where(same, reward, 0.0).mean())


def _log_plots(fit: OfferFit) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.offers.metrics import qini_curve

    hold = fit.holdout
    arm, y = hold["arm"].to_numpy(), hold["y"].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for k, offer in enumerate(fit.model.offer_ids, start=1):
        rows = (arm == 0) | (arm == k)
        if (arm == k).sum() < 2:
            continue
        x, gain = qini_curve(hold[f"uplift_{offer}"].to_numpy()[rows], arm[rows] == k, y[rows])
        ax.plot(x / max(x[-1], 1), gain, label=f"{offer} (Qini {fit.qini.get(offer, np.nan):.4f})")
        ax.plot([0, 1], [0, gain[-1]], ls=":", c="grey")
    ax.set(
        xlabel="share of units targeted (highest predicted uplift first)",
        ylabel="incremental outcomes",
        title="Qini curves, holdout",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    mlflow.log_figure(fig, "plots/qini.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    width = 0.8 / max(len(fit.deciles), 1)
    for i, (offer, table) in enumerate(fit.deciles.items()):
        ax.bar(
            table["decile"] + (i - len(fit.deciles) / 2) * width + width / 2,
            table["observed"],
            width=width,
            label=f"{offer} observed",
        )
        ax.plot(table["decile"], table["predicted"], marker="o", ms=3, label=f"{offer} predicted")
    ax.axhline(0.0, ls=":", c="grey")
    ax.set(
        xlabel="predicted uplift decile (1 = highest)",
        ylabel="uplift",
        title="Uplift by decile, holdout",
        xticks=range(1, 11),
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    mlflow.log_figure(fig, "plots/uplift_by_decile.png")
    plt.close(fig)


@dataclass(frozen=True)
class OfferOptions:
    """How ``train offers`` runs: outcome, window, campaigns and seed, gathered once at the edge."""

    horizon: int = 30
    outcome: str = "activity"
    experiments: tuple[str, ...] = ()
    seed: int = 0


def train_offers(
    *,
    data_dir: str | Path,
    as_of: date,
    tracking_uri: str,
    options: OfferOptions = OfferOptions(),
    progress: Callable[[str], None] | None = None,
) -> tuple[TrainOutcome, OfferFit]:
    """Build randomized units, fit and choose the uplift learner, evaluate, log to MLflow and promote.

    Raises:
        OfferDataError: No usable campaign, a named campaign that cannot be used, a window past the date
            or the data, no unit with features.
    """
    from training.registry import promote, use_experiment

    say = progress or (lambda _: None)
    say("offer catalogue and campaign units")
    catalogue = load_catalogue(data_dir)
    data, note = build_campaign_data(
        data_dir,
        catalogue,
        as_of=as_of,
        horizon=options.horizon,
        outcome=options.outcome,
        experiments=options.experiments,
    )
    say("value of each unit's outcome")
    values, default = unit_values(data_dir, data)
    say("fit uplift learners, choose by Qini, evaluate the policy")
    fit = fit_offers(data, values, catalogue, default_value=default, seed=options.seed)
    fit.facts["features"] = note
    use_experiment(tracking_uri, MODEL_NAME, Path(data_dir) / "mlartifacts")
    say("log and promote")
    features = data.units[["user_id", *data.features]]
    with mlflow.start_run(run_name=f"offers as of {as_of}") as run:
        mlflow.log_params(
            {
                "target_as_of": str(as_of),
                "horizon_days": options.horizon,
                "outcome": options.outcome,
                "campaigns": ",".join(data.experiments)[:500],
                "learner": fit.facts["learner"],
                "units": len(data.units),
                "offers": ",".join(catalogue.offer_ids)[:500],
                "seed": options.seed,
            }
        )
        metrics: dict[str, float] = {f"valid_qini_{k}": v for k, v in fit.learner_scores.items()}
        metrics.update({f"holdout_qini_{k}": v for k, v in fit.qini.items()})
        for name, row in fit.policies.iterrows():
            key = str(name).replace(" ", "_")
            metrics.update({f"{key}_{c}": float(v) for c, v in row.items() if np.isfinite(v)})
        mlflow.log_metrics(metrics)
        mlflow.log_text(fit.policies.to_csv(), "policies.csv")
        mlflow.log_text(fit.margins.to_csv(index=False), "margins.csv")
        _log_plots(fit)
        pyfunc_log = logging.getLogger("mlflow.pyfunc")
        level = pyfunc_log.level
        # its notes on pickled wrappers and type-hint signatures are not the operator's to act on
        pyfunc_log.setLevel(logging.ERROR)
        with tempfile.TemporaryDirectory() as tmp:
            saved = fit.model.save(Path(tmp) / "offer_model.pkl")
            info = mlflow.pyfunc.log_model(
                name="model", python_model=OfferPyfunc(), artifacts={"model": str(saved)}
            )
        pyfunc_log.setLevel(level)

        def score_champion(uri: str) -> float:
            champion = mlflow.pyfunc.load_model(uri).unwrap_python_model().model
            return policy_value_of(champion, fit.holdout, features, options.outcome)

        score = float(fit.policies["ips"].to_numpy()[list(fit.policies.index).index(POLICY)])
        decision = promote(
            tracking_uri=tracking_uri,
            name=MODEL_NAME,
            model_uri=info.model_uri,
            score=score,
            metric=PROMOTION_METRIC,
            score_champion=score_champion,
        )
        mlflow.set_tags({"decision": decision.reason, "alias": decision.alias, "version": decision.version})
    table = fit.policies.rename(columns={"ips": "value_ips", "dr": "value_dr"})
    outcome = TrainOutcome(
        kind=MODEL_NAME,
        run_id=run.info.run_id,
        model_uri=info.model_uri,
        version=decision.version,
        alias=decision.alias,
        decision=decision.reason,
        metrics=table,
        facts=fit.facts,
    )
    return outcome, fit


def load_offer_model(tracking_uri: str, alias: str = "champion") -> OfferModel | None:
    """The offer model behind ``models:/offers@<alias>``, pinned to its version; ``None`` when there is none.

    Raises:
        ModelNotFoundError: The registered model is not an offer model.
        mlflow.exceptions.MlflowException: The registry cannot be read (unusable URI, no answer).
    """
    from training.registry import connect

    connect(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        found = client.get_model_version_by_alias(MODEL_NAME, alias)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code not in MISSING_CODES:
            raise
        return None
    version = str(found.version)
    wrapper = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}").unwrap_python_model()
    model = getattr(wrapper, "model", None)
    if not isinstance(model, OfferModel):
        raise ModelNotFoundError(f"models:/{MODEL_NAME}/{version} in {tracking_uri} is not an offer model")
    model.version = version
    return model


def require_offer_model(tracking_uri: str) -> OfferModel:
    """:func:`load_offer_model`, refusing when none is registered."""
    model = load_offer_model(tracking_uri)
    if model is None:
        raise ModelNotFoundError(
            f"no offers model with alias 'champion' in {tracking_uri}; "
            "train one first: `userops train offers`"
        )
    return model


def folder_inputs(
    model: OfferModel, data_dir: str | Path, as_of: date, features: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """What ``model.choose`` reads for the users of ``features``, as every caller gives it: a retained
    user's value is their value at stake over the value horizon the model was trained with (from the
    folder's events before ``as_of``); cooldowns and caps read the folder's exposures.

    Returns:
        ``(features with the values, past exposures)``.
    """
    from features.contract import load_table
    from training.offers.train import VALUE_HORIZON
    from training.winback import values_for

    values = values_for(data_dir, as_of, features["user_id"], VALUE_HORIZON)
    frame = features.drop(columns=[c for c in values.columns if c != "user_id"], errors="ignore")
    return frame.merge(values, on="user_id", how="left"), load_table(data_dir, "exposures")


def choose_in_folder(
    model: OfferModel, data_dir: str | Path, as_of: date, features: pd.DataFrame
) -> pd.DataFrame:
    """``model.choose`` for the users of ``features`` on the folder's inputs (:func:`folder_inputs`)."""
    frame, history = folder_inputs(model, data_dir, as_of, features)
    return model.choose(frame, as_of=as_of, history=history)

"""``userops score churn``, ``userops winback`` and ``userops pipeline``: churn risk turned into action."""

from __future__ import annotations

from typing import Annotated

import typer

from serving.settings import Settings
from userops.console import console, step, summary
from userops.options import AllowGapOpt, AsOfOpt, DataOpt, OutOpt, open_data, require_store

score_app = typer.Typer(help="Score users with a registered model.", no_args_is_help=True)

HorizonOpt = Annotated[int, typer.Option("--horizon", min=1, help="Days ahead the value at stake covers.")]
LookbackOpt = Annotated[
    int, typer.Option("--lookback", min=1, help="Population: users active in these many days.")
]


def _warn_drift(drifted: list[str]) -> None:
    if drifted:
        console.print(
            f"[yellow]warning:[/] {len(drifted)} feature(s) drifted from the latest training snapshot "
            f"(PSI > 0.2): {', '.join(drifted)}",
            highlight=False,
            soft_wrap=True,
        )


@score_app.command("churn")
def score_churn(
    data: DataOpt,
    as_of: AsOfOpt,
    out: OutOpt,
    lookback: LookbackOpt = 365,
    allow_gap: AllowGapOpt = False,
) -> None:
    """Churn risk for every user active in the look-back: user_id, churn_risk, lifecycle_stage, reasons.

    Reads the data folder (events before --as-of) and the model models:/churn@champion from
    MLFLOW_TRACKING_URI or DATA/mlflow.db. Writes OUT (then rfm_segment, days_since_last_event and, when a
    propensity champion exists, purchase_propensity). churn_risk is a calibrated probability of no activity
    within the model's horizon. Warns by name about features whose distribution moved since training.
    """
    from userops.pipeline import score_outputs

    with step("score churn") as started:
        open_data(data, as_of, allow_gap=allow_gap)
        uri = Settings().tracking_uri_for(data)
        require_store(uri, "churn")
        with console.status("features, scores and reasons"):
            scores, _, drifted, drift = score_outputs(
                data, as_of, tracking_uri=uri, horizon=90, lookback=lookback
            )
        from features.contract import write_table

        path = write_table(scores, out)
        _warn_drift(drifted)
        summary(
            "score churn",
            {
                "users scored": len(scores),
                "mean churn risk": f"{scores['churn_risk'].mean():.3f}",
                "risk above 0.5": int((scores["churn_risk"] > 0.5).sum()),
                "largest PSI": f"{drift['feature'].iloc[0]} {drift['psi'].iloc[0]:.3f}"
                if len(drift)
                else "-",
                "model": f"models:/churn@champion ({uri})",
                "output": path,
            },
            started,
        )


def winback(  # noqa: PLR0913 - one parameter per command-line option (Typer reads them from the signature)
    data: DataOpt,
    as_of: AsOfOpt,
    out: OutOpt,
    top: Annotated[int | None, typer.Option("--top", min=1, help="Keep the first N users.")] = None,
    segment: Annotated[
        str | None,
        typer.Option(
            "--segment", help="Keep one RFM segment or lifecycle stage (cant_lose, at_risk, champions, ...)."
        ),
    ] = None,
    min_value: Annotated[
        float, typer.Option("--min-value", min=0, help="Keep users with at least this value at stake.")
    ] = 0.0,
    horizon: HorizonOpt = 90,
    lookback: LookbackOpt = 365,
    allow_gap: AllowGapOpt = False,
) -> None:
    """Win-back list ranked by expected value saved = churn_risk x value_at_stake.

    Reads the data folder (events before --as-of) and models:/churn@champion (MLFLOW_TRACKING_URI or
    DATA/mlflow.db). Writes OUT with user_id, churn_risk, value_at_stake (expected spend over the horizon
    if retained: BG/NBD purchases x Gamma-Gamma order value), expected_value_saved, lifecycle_stage,
    rfm_segment, reasons, offer_id and expected_value (the offers champion's next-best offer and its value
    after cost; empty and 0 when none is worth its cost or no offers model is registered).
    """
    from features.contract import write_table
    from training.winback import WinbackFilters
    from userops.pipeline import score_outputs

    with step("winback") as started:
        open_data(data, as_of, allow_gap=allow_gap)
        filters = WinbackFilters(top=top, segment=segment, min_value=min_value)
        uri = Settings().tracking_uri_for(data)
        require_store(uri, "churn")
        with console.status("scores, value at stake and ranking"):
            _, listing, drifted, _ = score_outputs(
                data,
                as_of,
                tracking_uri=uri,
                horizon=horizon,
                lookback=lookback,
                filters=filters,
            )
        path = write_table(listing, out)
        _warn_drift(drifted)
        summary(
            "win-back list",
            {
                "users listed": len(listing),
                "value at stake": f"{listing['value_at_stake'].sum():,.2f}",
                "expected value saved": f"{listing['expected_value_saved'].sum():,.2f}",
                "filters": f"top={top} segment={segment} min_value={min_value}",
                "output": path,
            },
            started,
        )


def pipeline(
    data: DataOpt,
    as_of: AsOfOpt,
    horizon: Annotated[int, typer.Option("--horizon", min=1, help="Label window in days.")] = 90,
    lookback: LookbackOpt = 365,
    allow_gap: AllowGapOpt = False,
) -> None:
    """Features -> train churn and propensity -> evaluate beside baselines -> promote -> score -> win-back.

    Reads the data folder (events before --as-of). Writes DATA/features/as_of=DATE.parquet, MLflow runs
    and registered versions (MLFLOW_TRACKING_URI or DATA/mlflow.db; champion moves only when beaten on the
    same holdout), DATA/scores/churn_as_of=DATE.csv and DATA/winback/winback_as_of=DATE.csv.
    """
    from userops.cmd_train import metrics_text
    from userops.pipeline import run_pipeline

    with step("pipeline") as started:
        open_data(data, as_of, allow_gap=allow_gap)
        uri = Settings().tracking_uri_for(data)
        with console.status("pipeline") as status:
            report = run_pipeline(
                data,
                as_of,
                tracking_uri=uri,
                horizon=horizon,
                lookback=lookback,
                progress=lambda text: status.update(text),
            )
        _warn_drift(report.drifted)
        trained: dict[str, object] = {}
        for outcome in report.outcomes:
            if not outcome.metrics.empty:  # a skipped propensity model has only its decision
                trained[f"{outcome.kind} holdout"] = metrics_text(outcome.metrics.loc["lightgbm"].items())
            trained[f"{outcome.kind} decision"] = outcome.decision
        summary("pipeline", {**trained, **report.rows, "tracking": uri}, started)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.add_typer(score_app, name="score")
    app.command("winback")(winback)
    app.command("pipeline")(pipeline)

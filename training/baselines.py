"""Baselines that every churn and propensity model is compared with on the same holdout.

* :class:`RecencyRule` — the operator's rule of thumb: the longer since the last activity, the likelier
  the user is gone (the observed rate per recency band of the training data, so it is a probability).
* :class:`RFMLogistic` — logistic regression on recency, frequency and monetary value.
* :class:`BGNBD` — the beta-geometric / negative-binomial "buy till you die" model of Fader, Hardie and
  Lee (2005), fitted by maximum likelihood on each user's repeat-activity history, with
  :class:`GammaGamma` (Fader, Hardie 2013) for the spend per transaction.

:func:`rfm_summary` turns events into the per-user ``frequency, recency, T`` these models need.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from training.errors import TrainingDataError

DAY = pd.Timedelta(days=1)


def rfm_summary(
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    event_types: tuple[str, ...] = ("purchase",),
    user_ids: pd.Series | None = None,
    time_unit_days: float = 7.0,
) -> pd.DataFrame:
    """Per-user repeat-transaction summary from events before ``as_of`` (one transaction per active day).

    Args:
        events: Contract events (``user_id, ts, event_type`` and ``amount`` for spend).
        as_of: Only events with ``ts < as_of`` are used.
        event_types: Which events count as a transaction.
        user_ids: Users to return (those without any transaction get ``frequency = 0, T = 0``).
        time_unit_days: Length of the time unit of ``recency`` and ``T``.

    Returns:
        ``user_id, frequency`` (repeat transaction days), ``recency`` (first to last transaction),
        ``T`` (first transaction to ``as_of``), ``monetary_value`` (mean spend of the repeat transaction
        days, 0 without any), ``n_transactions`` (all transaction days).
    """
    ev = events.loc[(events["ts"] < as_of) & events["event_type"].isin(list(event_types))]
    amount = ev["amount"].fillna(0.0) if "amount" in ev else pd.Series(0.0, index=ev.index)
    days = pd.DataFrame(
        {
            "user_id": ev["user_id"].astype(str).to_numpy(),
            "day": ev["ts"].dt.floor("D").to_numpy(),
            "amount": amount.to_numpy(),
        }
    )
    daily = days.groupby(["user_id", "day"], sort=True)["amount"].sum().reset_index()
    grouped = daily.groupby("user_id", sort=False)
    first, last, n = grouped["day"].min(), grouped["day"].max(), grouped.size()
    total = grouped["amount"].sum()
    first_amount = daily.drop_duplicates("user_id", keep="first").set_index("user_id")["amount"]
    unit = DAY * time_unit_days
    out = pd.DataFrame(
        {
            "frequency": (n - 1).astype(float),
            "recency": (last - first).dt.total_seconds() / unit.total_seconds(),
            "T": (as_of.floor("D") - first).dt.total_seconds() / unit.total_seconds(),
            "n_transactions": n.astype(float),
        }
    )
    repeat = (total - first_amount.reindex(out.index)).clip(lower=0.0)
    has_repeat = out["frequency"] > 0
    out["monetary_value"] = np.where(has_repeat, repeat / out["frequency"].where(has_repeat, 1), 0.0)
    out.index.name = "user_id"
    out = out.reset_index()
    if user_ids is not None:
        base = pd.DataFrame({"user_id": pd.Series(user_ids, dtype=str).to_numpy()})
        out = base.merge(out, on="user_id", how="left").fillna(
            {"frequency": 0.0, "recency": 0.0, "T": 0.0, "n_transactions": 0.0, "monetary_value": 0.0}
        )
    return out


class BGNBD:
    """The BG/NBD model: Poisson transactions while alive, a geometric chance of leaving after each one.

    Args:
        penalizer: L2 penalty on the log-parameters (0 is plain maximum likelihood).
    """

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Per-customer log-likelihood (Fader, Hardie & Lee 2005, equation 6)."""
        r, alpha, a, b = params
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a2 = betaln(a, b + x) - betaln(a, b)
        a3 = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(
                x > 0,
                np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x),
                -np.inf,
            )
        return np.asarray(a1 + a2 + np.logaddexp(a3, a4))

    def fit(self, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> BGNBD:
        """Maximum-likelihood fit of ``r, alpha, a, b``; returns ``self``.

        Args:
            frequency: Repeat transactions per customer.
            recency: Time of the last transaction since the first.
            T: Time since the first transaction.

        Raises:
            TrainingDataError: Fewer than 10 customers with ``T > 0``.
        """
        x, t_x, big_t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        keep = big_t > 0
        x, t_x, big_t = x[keep], t_x[keep], big_t[keep]
        if len(x) < 10:
            raise TrainingDataError(f"BG/NBD needs at least 10 customers with history; got {len(x)}")

        def objective(log_params: np.ndarray) -> float:
            ll = self.log_likelihood(np.exp(log_params), x, t_x, big_t).sum()
            return float(-ll / len(x) + self.penalizer * np.sum(log_params**2))

        start = np.log([1.0, max(float(np.mean(big_t)), 1e-2), 1.0, 1.0])
        result = minimize(
            objective, start, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-10}
        )
        result = minimize(objective, result.x, method="L-BFGS-B")
        self.params_ = np.exp(result.x)
        self.converged_ = bool(result.success)
        self.log_likelihood_ = -float(result.fun) * len(x)
        return self

    def probability_alive(self, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(still alive at ``T``) given the history (1 for customers without repeat transactions)."""
        return 1.0 / (1.0 + self._odds_gone(frequency, recency, T))

    def _odds_gone(self, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self.params_
        x, t_x, big_t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            odds = a / np.maximum(b + x - 1, 1e-12) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
        return np.where(x > 0, odds, 0.0)

    def probability_active(
        self, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """P(at least one transaction in ``(T, T + t]``) given the history.

        Exact under the model: a customer leaves only right after a transaction, so one alive at ``T``
        stays silent over the window with probability ``((alpha+T)/(alpha+T+t))^(r+x)``.
        """
        r, alpha, _, _ = self.params_
        x, big_t = np.asarray(frequency, dtype=float), np.asarray(T, dtype=float)
        silent = ((alpha + big_t) / (alpha + big_t + t)) ** (r + x)
        return np.asarray(self.probability_alive(frequency, recency, T) * (1.0 - silent))

    def expected_transactions(
        self, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """E[transactions in ``(T, T + t]``] given the history (Fader, Hardie & Lee 2005, equation 10)."""
        r, alpha, a, b = self.params_
        x, _, big_t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        z = t / (alpha + big_t + t)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
        silent = ((alpha + big_t) / (alpha + big_t + t)) ** (r + x)
        head = (a + b + x - 1) / (a - 1) * (1 - silent * hyp)  # also valid for a < 1 (both factors flip)
        return np.asarray(head / (1 + self._odds_gone(frequency, recency, T)))


class GammaGamma:
    """Spend per transaction: gamma(p, nu) around each customer's mean, nu ~ gamma(q, gamma).

    Args:
        penalizer: L2 penalty on the log-parameters.
    """

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Per-customer log-likelihood of the mean spend ``m`` over ``x`` transactions."""
        p, q, g = params
        return np.asarray(
            gammaln(p * x + q)
            - gammaln(p * x)
            - gammaln(q)
            + q * np.log(g)
            + (p * x - 1) * np.log(m)
            + p * x * np.log(x)
            - (p * x + q) * np.log(g + m * x)
        )

    def fit(self, frequency: np.ndarray, monetary_value: np.ndarray) -> GammaGamma:
        """Maximum-likelihood fit of ``p, q, gamma`` on customers with repeat spend; returns ``self``.

        Raises:
            TrainingDataError: Fewer than 10 customers with repeat spend.
        """
        x, m = np.asarray(frequency, dtype=float), np.asarray(monetary_value, dtype=float)
        keep = (x > 0) & (m > 0)
        x, m = x[keep], m[keep]
        if len(x) < 10:
            raise TrainingDataError(
                f"Gamma-Gamma needs at least 10 customers with repeat spend; got {len(x)}"
            )

        def objective(log_params: np.ndarray) -> float:
            ll = self.log_likelihood(np.exp(log_params), x, m).sum()
            return float(-ll / len(x) + self.penalizer * np.sum(log_params**2))

        start = np.log([1.0, 2.0, float(np.mean(m))])
        result = minimize(
            objective, start, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-10}
        )
        result = minimize(objective, result.x, method="L-BFGS-B")
        self.params_ = np.exp(result.x)
        self.converged_ = bool(result.success)
        return self

    def population_mean(self) -> float:
        """Mean spend per transaction of a customer we know nothing about (``p gamma / (q - 1)``)."""
        p, q, g = self.params_
        return float(p * g / (q - 1)) if q > 1 else float("nan")

    def expected_spend(self, frequency: np.ndarray, monetary_value: np.ndarray) -> np.ndarray:
        """E[spend per transaction] given each customer's repeat transactions and their mean spend."""
        p, q, g = self.params_
        x, m = np.asarray(frequency, dtype=float), np.asarray(monetary_value, dtype=float)
        x = np.where(m > 0, x, 0.0)
        return np.asarray((g + m * x) * p / (p * x + q - 1))


class RecencyRule:
    """Rule of thumb: the outcome rate of the training users in the same recency band.

    Args:
        column: Recency feature (days since the last activity).
        n_bands: Quantile bands of recency.
    """

    def __init__(self, column: str = "days_since_last_event", n_bands: int = 20) -> None:
        self.column = column
        self.n_bands = n_bands

    def _band(self, frame: pd.DataFrame) -> np.ndarray:
        values = pd.to_numeric(frame[self.column], errors="coerce").to_numpy(dtype=float)
        band = np.searchsorted(self.edges_, values, side="right")
        return np.where(np.isnan(values), len(self.edges_) + 1, band)

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> RecencyRule:
        """Learn the band edges and each band's outcome rate; returns ``self``."""
        values = pd.to_numeric(frame[self.column], errors="coerce").to_numpy(dtype=float)
        finite = np.isfinite(values).any()
        qs = np.nanquantile(values, np.linspace(0, 1, self.n_bands + 1)[1:-1]) if finite else []
        self.edges_ = np.unique(np.asarray(qs, dtype=float))
        y = np.asarray(y, dtype=float)
        band = self._band(frame)
        prior = float(y.mean())
        self.rates_ = {
            int(k): (float(y[band == k].sum()) + prior) / (float((band == k).sum()) + 1.0)
            for k in np.unique(band)
        }
        self.prior_ = prior
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the outcome per row."""
        return np.array([self.rates_.get(int(k), self.prior_) for k in self._band(frame)])


RFM_COLUMNS: tuple[str, ...] = ("days_since_last_event", "orders_180d", "spend_180d")


class RFMLogistic:
    """Logistic regression on log recency, log frequency and log monetary value.

    Args:
        columns: Recency, frequency and monetary columns of the feature frame.
        C: Inverse regularization strength.
    """

    def __init__(self, columns: tuple[str, ...] = RFM_COLUMNS, C: float = 1.0) -> None:
        self.columns = columns
        self.C = C

    def _design(self, frame: pd.DataFrame) -> np.ndarray:
        x = _log_columns(frame, self.columns)
        return np.where(np.isnan(x), self.fill_, x)

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> RFMLogistic:
        """Fit on the training frame; returns ``self``."""
        raw = _log_columns(frame, self.columns)
        fill = np.nanmax(raw, axis=0)  # unknown recency = as old as the oldest seen
        self.fill_ = np.where(np.isfinite(fill), fill, 0.0)
        self.model_: Pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000))
        self.model_.fit(self._design(frame), np.asarray(y, dtype=int))
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the outcome per row."""
        return np.asarray(self.model_.predict_proba(self._design(frame))[:, 1])


def _log_columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    cols = [pd.to_numeric(frame[c], errors="coerce").astype(float).clip(lower=0).to_numpy() for c in columns]
    return np.log1p(np.column_stack(cols))

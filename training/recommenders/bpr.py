"""Bayesian personalised ranking (``implicit``): factors trained to rank a user's items above the rest.

``implicit`` appends a bias column: the last item factor is the item's bias and the last user factor is
fixed at 1. A new or updated history is folded in by least squares against the other item factors (BPR has
no closed-form user step; this is the standard approximation), keeping the bias column at 1.
"""

from __future__ import annotations

import scipy.sparse as sp

from training.recommenders.als import FactorModel


class BPRRecommender(FactorModel):
    """Matrix factorisation trained with the BPR pairwise loss.

    Args:
        factors: Latent dimensions (plus one bias column).
        learning_rate: SGD step.
        regularization: L2 penalty.
        iterations: Epochs.
        random_state: Seed.
        num_threads: Threads (1 keeps results reproducible: SGD across threads races).
        fold_in_alpha: Confidence per unit weight when folding in a history.
    """

    family = "bpr"
    bias_column = True

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 0,
        num_threads: int = 1,
        fold_in_alpha: float = 1.0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.fold_in_alpha = fold_in_alpha

    def fit(self, user_items: sp.csr_matrix) -> BPRRecommender:
        """Learn factors from a users × items matrix (BPR uses only which cells are positive)."""
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        self._fit_implicit(
            lambda: BayesianPersonalizedRanking(
                factors=self.factors,
                learning_rate=self.learning_rate,
                regularization=self.regularization,
                iterations=self.iterations,
                random_state=self.random_state,
                num_threads=self.num_threads,
            ),
            user_items,
        )
        return self

    def _fold_in_params(self) -> tuple[float, float]:
        return self.fold_in_alpha, self.regularization + 1e-3

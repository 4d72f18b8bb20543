"""What can go wrong in training that is the caller's to fix, not a bug: one base, a few named kinds.

The command line and the API turn a :class:`TrainingError` into a one-line message (exit code 1, or a
4xx answer); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class TrainingError(Exception):
    """Base of every error the training package raises on purpose."""


class ModelNotFoundError(TrainingError):
    """No model is registered under the name and alias asked for (train one first)."""


class TrainingDataError(TrainingError):
    """The data cannot train or score as asked: too few users, one class only, no events in a window,
    no back-test date that fits, a feature the model needs missing from the frame."""


class OfferDataError(TrainingDataError):
    """An offer catalogue or campaign that cannot train or choose offers: an offer missing from the
    catalogue, a campaign with one arm, an outcome window past the data or the date, no usable unit."""

"""What can go wrong with experiments that is the caller's to fix, not a bug: one base, named kinds.

The command line and the API turn an :class:`ExperimentsError` into a one-line message (exit code 1, or
a 4xx answer); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class ExperimentsError(Exception):
    """Base of every error the experiments package raises on purpose."""


class StoreError(ExperimentsError):
    """The experiment store refused a definition or a change, or cannot be reached.

    An unknown key, a duplicate, a move its status forbids; a bad key, variants text, weight, coverage or
    targeting rule; a database that does not answer (named by its URL, without the password).
    """


class DataError(ExperimentsError):
    """Exposures or events cannot be analysed as asked: missing columns, unknown metric, no units."""


class UnknownExperimentError(StoreError):
    """No experiment with this key is in the store."""


class DatabaseError(StoreError):
    """The database refused the statement or could not be reached."""

"""What can go wrong with a user's data that is theirs to fix, not a bug: one base, a few named kinds.

The command line and the API turn a :class:`FeaturesError` into a one-line message that names the file
and the column (exit code 1, or a 4xx answer); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class FeaturesError(Exception):
    """Base of every error the features package raises on purpose."""


class ContractError(FeaturesError):
    """A table breaks the data contract: a required column is missing, a file cannot be read as a table."""


class DataError(FeaturesError):
    """The data is readable but cannot serve the request: no events before the date, no users to score."""


class JobBusyError(FeaturesError):
    """Another feature job or ingest holds the data folder's lock; try again when it has finished."""


class StoreError(FeaturesError):
    """The online store cannot be used: a Redis URL that is none, a server that does not answer, a store
    file that is not one. (Serving may answer it with 503 rather than a 4xx: the fix is the operator's.)"""

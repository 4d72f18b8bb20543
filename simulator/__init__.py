"""The synthetic world with its ground truth, and the oracles built on it.

Only ``userops``, the tests and the benchmarks import this package; production code (``features``,
``training``, ``experiments``, ``serving``) never does, and never reads a data folder's ``truth/``. What
the truth can tell an evaluation reaches training through a hook the caller fills in, such as
:func:`simulator.oracle.recommender_reference`.
"""

"""The ``userops`` command line: one typed, documented command per stage of the pipeline."""

from __future__ import annotations

import typer

from userops import (
    cmd_churn,
    cmd_data,
    cmd_experiments,
    cmd_features,
    cmd_offers,
    cmd_recommend,
    cmd_serve,
    cmd_train,
)

app = typer.Typer(
    name="userops",
    help="Churn risk, win-back lists, recommendations, next-best offers and A/B experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

COMMANDS = (
    cmd_data,
    cmd_features,
    cmd_train,
    cmd_churn,
    cmd_offers,
    cmd_recommend,
    cmd_experiments,
    cmd_serve,
)
"""Every command module, in the order ``--help`` lists them; each adds its commands with ``register``."""

for module in COMMANDS:
    module.register(app)

if __name__ == "__main__":  # pragma: no cover
    app()

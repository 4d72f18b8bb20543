"""The ``userops`` command line: one typed, documented command per stage of the pipeline."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="userops",
    help="Churn risk, win-back lists, recommendations, next-best offers and A/B experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each stage lives in its own module and registers itself here (keep this list sorted).
from userops import cmd_data  # noqa: E402

cmd_data.register(app)
from userops import cmd_features  # noqa: E402

cmd_features.register(app)
from userops import experiments_cli  # noqa: E402

app.add_typer(experiments_cli.app, name="experiments")

from userops import cmd_train  # noqa: E402

cmd_train.register(app)
from userops import cmd_churn  # noqa: E402

cmd_churn.register(app)

from userops import cmd_recommend  # noqa: E402

cmd_recommend.register(app)

if __name__ == "__main__":  # pragma: no cover
    app()

"""The command line only: parse options, call the library, print. No logic lives here.

Every user-facing failure is a `MahaError` (or a click usage error); the command group prints it as
one line on stderr and exits 2, so the in-process test runner and the console script answer alike.
Each command calls the checks of `validate` before any model is loaded or anything is written, then holds
its output's lock (`checks.one_writer`) until it ends.
The commands live by stage (`train_commands`, `deploy_commands`, `study_commands`) and are registered here on
the one Typer app, in the order `--help` lists them; no command module imports torch at import time.
"""

from __future__ import annotations

import errno

import typer
from rich.text import Text
from typer.core import TyperGroup

try:  # typer 0.2x vendors its own copy of click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on the real click
    from click.exceptions import NoArgsIsHelpError, UsageError

from ..core.errors import MahaError
from . import deploy_commands as deploy
from . import study_commands as study
from . import train_commands as train
from .output import console

_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class OneLineErrors(TyperGroup):
    """Turn a MahaError, a usage error or a full/read-only disk anywhere below into one line and exit status 2."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except (MahaError, UsageError) as exc:
            message = exc.format_message() if isinstance(exc, UsageError) else str(exc)
            console.print(Text.assemble(("error:", "red"), " " + " ".join(message.split("\n"))), soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.errno not in _DISK_ERRORS:
                raise
            hint = ("; free some space and run the command again (finished work is kept)"
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "")
            console.print(Text.assemble(("error:", "red"), f" {exc.filename or 'output'}: {exc.strerror}{hint}"),
                          soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(help="Make Marathi text classifiers small, fast and cheap.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, cls=OneLineErrors)
data_app = typer.Typer(help="Datasets: what is there and how it was cleaned.", no_args_is_help=True)
models_app = typer.Typer(help="Teacher models.", no_args_is_help=True)
baseline_app = typer.Typer(help="Reference baselines.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(baseline_app, name="baseline")

for command in (train.finetune, train.distill, train.prune, deploy.evaluate, deploy.predict, study.compare,
                study.reproduce, study.report, study.optimize, deploy.trim, deploy.export,
                ):
    app.command()(command)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
            add_help_option=False)(deploy.serve)
data_app.command("inspect")(study.data_inspect)
models_app.command("build-e5")(study.models_build_e5)
baseline_app.command("tfidf")(study.baseline_tfidf)


def main() -> None:
    """Console entry point (errors are turned into one line and exit status 2 by `OneLineErrors`)."""
    app()

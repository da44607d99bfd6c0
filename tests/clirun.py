"""Running the CLI in process, as the tests of several modules do: one place for how a refusal must look."""

from __future__ import annotations

from typer.testing import CliRunner

from mahacompress.cli.app import app

runner = CliRunner()


def run(*args: str):
    """`mahacompress ARGS` in this process; exceptions are caught, as the console script would end."""
    return runner.invoke(app, list(args), catch_exceptions=True)


def one_line_error(result) -> str:
    """The one stderr line of a refused command (exit status 2, no traceback)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]

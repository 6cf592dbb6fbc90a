"""Command line: ``eelsprint demo | fit | classify | report | export | bench | watch`` and the
active-learning commands ``suggest | update | gaps``.

Errors a user can cause print one line naming the file and the problem and
exit with status 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import signal
import sys

import click
import typer

from eelsprint.cli import active, commands  # noqa: F401  (the commands register on ``app``)
from eelsprint.cli.common import app
from eelsprint.exceptions import EelsprintError, first_line

__all__ = ["app", "main"]

_received: list[int] = []


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: one line and exit status 1 for every error a user can cause or meet.

    ``--debug`` shows the traceback instead. SIGTERM is handled like Ctrl-C: temporary
    files are removed and the command exits with 128 + the signal number.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    debug = "--debug" in sys.argv
    try:
        code = app(standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        code = 130
    except click.ClickException as err:  # usage errors: click's own message, exit 2
        err.show()
        sys.exit(err.exit_code)
    except (EelsprintError, OSError) as err:
        if debug:
            raise
        if isinstance(err, EelsprintError):
            message = first_line(err)
        else:  # an OSError we did not anticipate: still one line naming the file
            message = f"{err.filename or 'eelsprint'}: {err.strerror or first_line(err)}"
        typer.echo(f"error: {message}", err=True)
        sys.exit(1)
    if code == 130:  # Typer turns Ctrl-C (and so our SIGTERM) into exit code 130
        number = _received[-1] if _received else signal.SIGINT
        name = signal.Signals(number).name
        typer.echo(f"error: interrupted by {name}; nothing half-written was left", err=True)
        sys.exit(128 + number)
    sys.exit(code if isinstance(code, int) else 0)

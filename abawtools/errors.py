"""The one exception users see: a bad input, reported as a single line `abaw CMD: error: ...`."""

import click


class AbawError(click.ClickException):
    """A problem with the user's data or files (exit 1), as opposed to bad usage (exit 2)."""

    exit_code = 1

    def __init__(self, message, command=None):
        super().__init__(message)
        ctx = click.get_current_context(silent=True)
        self.command = command or (ctx.command_path if ctx is not None else "abaw")

    def show(self, file=None):
        click.echo(f"{self.command}: error: {self.format_message()}", err=True)


def few(names, most=5):
    """The first `most` of `names` for a one-line message, `a, b, c ...` when there are more."""
    names = list(names)
    return ", ".join(names[:most]) + (" ..." if len(names) > most else "")

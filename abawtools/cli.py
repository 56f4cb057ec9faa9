"""The `abaw` entry point: one click group whose subcommands are imported only when run.

Each command lives in `abawtools/commands/<name>.py` and keeps heavy imports (torch, transformers,
cv2, av) inside its function body, so `abaw --help`, `smooth`, `score`, `align` and `window`
start in the time numpy and click take.
"""

import importlib
import os
import signal
import sys

import click

from abawtools import __version__
from abawtools.errors import AbawError

# name -> module under abawtools.commands that defines `cli`
COMMANDS = {
    "extract-visual": "extract_visual",
    "extract-audio": "extract_audio",
    "align": "align",
    "window": "window",
    "train": "train",
    "infer": "infer",
    "smooth": "smooth",
    "score": "score",
    "finetune": "finetune",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that command is listed or run."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        module = COMMANDS.get(name)
        if module is None:
            return None
        try:
            mod = importlib.import_module(f"abawtools.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"abawtools.commands.{module}":
                raise
            return _not_yet(name)
        command = mod.cli
        _guard_paths(name, command)
        if not command.epilog:  # --help is the short reference; the page is the long one
            command.epilog = f"Reference: docs/commands/{name}.md (in the repository; online with the sources)."
        return command

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        ctx.meta["abaw.command"] = f"{ctx.command_path} {name}"
        return name, cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # anything else is still the user's data most of the time
            if ctx.obj and ctx.obj.get("debug"):
                raise
            command = ctx.meta.get("abaw.command", ctx.command_path)
            message = str(exc) or type(exc).__name__
            raise AbawError(f"{message} (rerun with --debug for a traceback)", command=command) from exc


def _guard_paths(name, command):
    """Run the one output-vs-input rule (commands/_paths.py) before the command's body, once."""
    import functools

    body = command.callback
    if getattr(body, "abaw_guarded", False):
        return

    @functools.wraps(body)
    def guarded(*args, **kwargs):
        from abawtools.commands import _paths

        _paths.check(name, command, kwargs)
        return body(*args, **kwargs)

    guarded.abaw_guarded = True
    command.callback = guarded


def _not_yet(name):
    @click.command(name=name, help="Not available in this version of abawtools yet.")
    def stub():
        raise click.UsageError(f"'{name}' is not implemented in abawtools {__version__} yet")

    return stub


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="abawtools")
@click.option("--debug", is_flag=True, envvar="ABAW_DEBUG", help="Show a traceback on errors.")
@click.pass_context
def cli(ctx, debug):
    """Frame-level expression recognition on Aff-Wild2, as a set of tools that chain.

    Every command reads and writes NPY / CSV / label files; `-` means stdin or stdout; logs and
    progress go to stderr. Example, one video end to end:

    \b
      abaw extract-visual clip.mp4 -o v.npy
      abaw extract-audio  clip.mp4 -o a50.npy
      abaw align a50.npy --like v.npy -o a.npy
      abaw infer -m model.safetensors --visual v.npy --audio a.npy \\
        | abaw smooth - | abaw score - clip.txt --format table
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv=None):
    # `abaw smooth x.npy | head` should end quietly, like any Unix tool.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        cli.main(args=argv, prog_name="abaw")
    except BrokenPipeError:  # pragma: no cover - only where SIGPIPE does not exist
        os._exit(141)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

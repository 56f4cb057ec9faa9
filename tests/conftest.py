import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from abawtools import CLASSES
from abawtools.cli import cli

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "shared", "fixtures")
FACE_PNG = os.path.join(FIXTURES, "face-astronaut.png")


@pytest.fixture
def run():
    """Run `abaw ARGS` in-process with click's CliRunner; stderr kept apart from stdout."""

    def _run(args, input=None):
        try:
            runner = CliRunner(mix_stderr=False)
        except TypeError:  # click >= 8.2 always separates the streams
            runner = CliRunner()
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return _run


def abaw(*args, stdin=None, check=True, env=None):
    """Run `python -m abawtools ARGS` as a real subprocess (real, unseekable pipes)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "abawtools", *map(str, args)],
        input=stdin,
        capture_output=True,
        env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"abaw {' '.join(map(str, args))} failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc


def write_label_file(path, labels):
    with open(path, "w") as fh:
        fh.write(",".join(CLASSES) + "\n")
        fh.writelines(f"{int(v)}\n" for v in labels)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from abawtools import CLASSES
from abawtools.cli import cli

HERE = os.path.dirname(os.path.abspath(__file__))
# a real face photo kept in the repository (public domain; see tests/data/README.md)
FACE_PNG = os.path.join(HERE, "data", "face-astronaut.png")


def invoke(*args, input=None, check=True):
    """Run `abaw ARGS` in-process with click's CliRunner (no interpreter or torch start-up: ~2 s
    less than a subprocess); stderr kept apart from stdout; `check`: a failure raises with it."""
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always separates the streams
        runner = CliRunner()
    result = runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False, prog_name="abaw")
    if check and result.exit_code != 0:
        raise AssertionError(f"abaw {' '.join(map(str, args))} failed ({result.exit_code}): {result.stderr}")
    return result


def one_line_error(result, *words):
    """`result` failed as a bad input does: exit 1, one line `abaw CMD: error: ...` (no traceback)
    holding each of `words`; returns the line."""
    assert result.exit_code == 1, (result.exit_code, result.stderr)
    line = result.stderr.strip().splitlines()[-1]
    assert "error:" in line and "Traceback" not in result.stderr, result.stderr
    for w in words:
        assert str(w) in line, line
    return line


@pytest.fixture
def run():
    """invoke(ARGS) as a fixture, for a list of arguments, never raising on a failure."""
    return lambda args, input=None: invoke(*args, input=input, check=False)


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


def tool_env():
    """The environment for scripts that call `abaw`: this venv first on PATH, no SLURM variables."""
    e = dict(os.environ)
    e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + e["PATH"]
    for k in [k for k in e if k.startswith("SLURM_")]:
        del e[k]
    return e


def write_label_file(path, labels):
    with open(path, "w") as fh:
        fh.write(",".join(CLASSES) + "\n")
        fh.writelines(f"{int(v)}\n" for v in labels)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def make_feature_set(root, rng, n_videos=6, dv=16, da=12, t_range=(150, 400), missing=0.1, seg=(20, 60),
                     prefix="v"):
    """Synthetic per-video features whose labels are a learnable function of them.

    Labels are piecewise constant; visual = class prototype + noise (some frames NaN = no face),
    audio = another prototype + noise. Returns the three folders.
    """
    protos = np.random.default_rng(99)  # the same classes in every set (train, val, test)
    vis_proto = protos.normal(size=(8, dv)) * 2
    aud_proto = protos.normal(size=(8, da)) * 2
    dirs = [root / "visual", root / "audio", root / "labels"]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for i in range(n_videos):
        T = int(rng.integers(*t_range))
        labels = []
        while len(labels) < T:
            labels += [int(rng.integers(0, 8))] * int(rng.integers(*seg))
        labels = np.array(labels[:T])
        v = vis_proto[labels] + rng.normal(size=(T, dv))
        a = aud_proto[labels] + rng.normal(size=(T, da))
        v[rng.random(T) < missing] = np.nan
        y = labels.copy()
        y[rng.random(T) < 0.05] = -1
        np.save(dirs[0] / f"{prefix}{i}.npy", v.astype(np.float16))
        np.save(dirs[1] / f"{prefix}{i}.npy", a.astype(np.float32))
        write_label_file(dirs[2] / f"{prefix}{i}.txt", y)
    return dirs

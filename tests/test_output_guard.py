"""No output replaces anything a command reads, whatever option names either (commands/_paths.py).

Each route below was exit 0 with the input replaced before the one rule existed (issue 25)."""

import os

import click
import numpy as np
import pytest
from conftest import write_label_file

from abawtools import tasks
from abawtools.cli import COMMANDS, cli
from abawtools.commands import _paths


def _refused(result, *words):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr and "error:" in lines[-1], lines
    for w in words:
        assert str(w) in lines[-1], lines[-1]


def _va_file(path, rows):
    path.write_text("valence,arousal\n" + "".join(f"{v},{a}\n" for v, a in rows))


def _au_file(path, rows):
    path.write_text(",".join(tasks.AU_NAMES) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "au").mkdir()
    (tmp_path / "labels").mkdir()
    for vid in ("v0", "v1"):
        np.save(tmp_path / f"{vid}.npy", rng.normal(size=(20, 8)).astype(np.float32))
        np.save(tmp_path / "au" / f"{vid}.npy", rng.normal(size=(20, 12)).astype(np.float32))
        write_label_file(tmp_path / "labels" / f"{vid}.txt", rng.integers(0, 8, 20))
    np.save(tmp_path / "audio50.npy", rng.normal(size=(20, 4)).astype(np.float32))
    (tmp_path / "t.csv").write_text("image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n"
                                    + "".join(f"v{i}/{t:05d}.jpg,\n" for i in (0, 1) for t in range(1, 21)))
    (tmp_path / "th.json").write_text('{"thresholds": {' + ",".join(f'"{n}": 0.5' for n in tasks.AU_NAMES) + "}}")
    _au_file(tmp_path / "au.txt", rng.integers(0, 2, (20, 12)).tolist())
    return tmp_path


def _same(path, before):
    assert path.read_bytes() == before, f"{path} was changed"


def _route(run, path, args, *words):
    before = path.read_bytes()
    _refused(run(args), path, *words)
    _same(path, before)


def test_smooth_submission_over_its_template(files, run):
    _route(run, files / "t.csv", ["smooth", files / "v0.npy", files / "v1.npy", "--format", "submission",
                                  "--template", files / "t.csv", "-o", files / "t.csv"], "--template")


def test_smooth_submission_over_an_input_npy(files, run):
    _route(run, files / "v0.npy", ["smooth", files / "v0.npy", files / "v1.npy", "--format", "submission",
                                   "-o", files / "v0.npy"], "is the input")


def test_smooth_over_its_thresholds(files, run):
    _route(run, files / "th.json", ["smooth", files / "au" / "v0.npy", "--thresholds", files / "th.json",
                                    "-o", files / "th.json"], "--thresholds")


def test_score_tuned_thresholds_over_the_logits(files, run):
    _au_file(files / "labels" / "a0.txt", np.random.default_rng(1).integers(0, 2, (20, 12)).tolist())
    _route(run, files / "au" / "v0.npy", ["score", files / "au" / "v0.npy", files / "labels" / "a0.txt",
                                          "--tune-thresholds", files / "au" / "v0.npy"], "--tune-thresholds")


def test_score_json_over_the_annotation(files, run):
    _route(run, files / "labels" / "v0.txt", ["score", files / "v0.npy", files / "labels" / "v0.txt",
                                              "-o", files / "labels" / "v0.txt"], "is the input")


def test_score_plot_over_the_prediction(files, run):
    pred = files / "p.txt"
    write_label_file(pred, np.zeros(20, int))
    _route(run, pred, ["score", pred, files / "labels" / "v0.txt", "--plot", pred], "--plot")


def test_window_manifest_over_an_annotation_in_the_label_folder(files, run):
    (files / "visual").mkdir()
    for vid in ("v0", "v1"):
        np.save(files / "visual" / f"{vid}.npy", np.zeros((20, 4), np.float32))
    _route(run, files / "labels" / "v0.txt", ["window", "--visual-dir", files / "visual", "--label-dir",
                                              files / "labels", "-o", files / "labels" / "v0.txt"],
           "lies inside the folder of", "--label-dir")


def test_extract_visual_logits_over_its_like_file(files, run):
    (files / "crops" / "f3").mkdir(parents=True)
    (files / "ft").mkdir()
    _route(run, files / "labels" / "v0.txt", ["extract-visual", files / "crops" / "f3", "--no-detect", "--logits",
                                              "--model", files / "ft", "--like", files / "labels" / "v0.txt",
                                              "-o", files / "labels" / "v0.txt"], "--like")


def test_align_over_its_like_file(files, run):
    _route(run, files / "labels" / "v1.txt", ["align", files / "audio50.npy", "--like", files / "labels" / "v1.txt",
                                              "-o", files / "labels" / "v1.txt"], "--like")


def test_a_link_to_an_input_is_the_input(files, run):
    os.symlink(files / "t.csv", files / "link.csv")
    _route(run, files / "t.csv", ["smooth", files / "v0.npy", files / "v1.npy", "--format", "submission",
                                  "--template", files / "t.csv", "-o", files / "link.csv"], "--template")


def test_a_checkpoint_folder_holding_an_input_is_refused(files, run):
    (files / "m.csv").write_text("x\n")
    _refused(run(["train", files / "m.csv", "-o", files / "model.safetensors", "--resume", files]),
             "--resume", "holds the input")


def test_writing_beside_the_inputs_is_still_fine(files, invoke_ok=None):
    from conftest import invoke

    invoke("smooth", files / "v0.npy", files / "v1.npy", "--format", "submission", "--template", files / "t.csv",
           "-o", files / "submission.csv")
    assert (files / "submission.csv").read_text().startswith("image_location,")
    invoke("smooth", files / "v0.npy", "-o", files / "labels" / "new.txt")  # a new file in an input folder
    assert (files / "labels" / "new.txt").exists()


NOT_PATHS = {"shard", "device", "weights", "task_weights"}  # strings that never name a file


def test_every_path_parameter_of_every_command_is_an_input_or_an_output():
    """A new option that reads or writes a file must join READS or WRITES, or the rule misses it."""
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        known = set(_paths.READS[name]) | set(_paths.WRITES[name])
        for param in command.params:
            pathlike = isinstance(param.type, (click.Path, click.File)) or type(param.type) is click.types.StringParamType
            if pathlike and param.name not in NOT_PATHS:
                assert param.name in known, f"abaw {name} {param.opts}: neither in READS nor WRITES"
        for listed in known:
            assert listed in {p.name for p in command.params}, (name, listed)  # no stale name either

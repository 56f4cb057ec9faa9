"""Bad input never passes silently: one test per class of problem (issue: hardening)."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import abaw, make_feature_set, write_label_file

from abawtools import formats
from abawtools.model import ModelConfig, build_model, save_model

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def error_line(result):
    """Exit 1, exactly one `abaw CMD: error: ...` line, the last one, no traceback."""
    lines = result.stderr.splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert result.exit_code == 1 and len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    root = tmp_path_factory.mktemp("feats")
    make_feature_set(root / "d", np.random.default_rng(0), n_videos=2, t_range=(70, 90))
    return root / "d"


# ------------------------------------------------------------------ the repository alone
def test_the_repository_refers_to_nothing_outside_it():
    import re

    pattern = re.compile(r"\.\./shared|shared/(fixtures|DESIGN)")
    hits = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith((".git", ".venv", "__pycache__", ".pytest", ".ruff"))
                   and not d.endswith(".egg-info")]
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith((".py", ".md", ".sh", ".sbatch", ".cfg", ".toml", "Makefile", "run")) \
                    and path != os.path.abspath(__file__):
                with open(path, errors="replace") as fh:
                    hits += [f"{path}: {line.strip()}" for line in fh if pattern.search(line)]
    assert hits == []
    assert os.path.exists(os.path.join(ROOT, "tests", "data", "face-astronaut.png"))
    assert os.path.exists(os.path.join(ROOT, "docs", "formats.md"))


# ------------------------------------------------- silent wrong results become errors
def _model(path, **cfg):
    torch.manual_seed(0)
    m = build_model(ModelConfig(visual_dim=16, audio_dim=12, d_model=16, layers=1, heads=2, **cfg))
    save_model(str(path), m)
    return m


def test_infer_refuses_a_model_of_other_classes_or_nan_weights(run, feats, tmp_path):
    v, a = feats / "visual" / "v0.npy", feats / "audio" / "v0.npy"
    _model(tmp_path / "seven.safetensors", num_classes=7)
    err = error_line(run(["infer", "-m", tmp_path / "seven.safetensors", "--visual", v, "--audio", a,
                          "-o", tmp_path / "o.npy"]))
    assert "7 classes" in err and not (tmp_path / "o.npy").exists()
    m = _model(tmp_path / "ok.safetensors")
    with torch.no_grad():
        m.head[0].weight[0, 0] = float("nan")
    save_model(str(tmp_path / "nan.safetensors"), m)
    err = error_line(run(["infer", "-m", tmp_path / "nan.safetensors", "--visual", v, "--audio", a]))
    assert "NaN or Inf in the weights" in err and "head.0.weight" in err


def test_window_refuses_a_one_dimensional_feature_file(run, feats, tmp_path):
    vis = tmp_path / "vis"
    vis.mkdir()
    T = len(formats.read_labels(str(feats / "labels" / "v0.txt")))
    np.save(vis / "v0.npy", np.zeros(T, np.float32))
    err = error_line(run(["window", "--visual-dir", vis, "--audio-dir", feats / "audio", "--label-dir",
                          feats / "labels", "-o", tmp_path / "m.csv"]))
    assert str(vis / "v0.npy") in err and "expected features (T, D)" in err


def test_submission_duplicates_and_frame_zero(run, tmp_path):
    write_label_file(tmp_path / "v.txt", [1, 2, 3])
    (tmp_path / "lab").mkdir()
    write_label_file(tmp_path / "lab" / "v.txt", [1, 2, 3])
    for rows, needle in ((["v/00001.jpg,1", "v/00002.jpg,2", "v/00002.jpg,5", "v/00003.jpg,3"], "labelled 5 here"),
                         (["v/00000.jpg,1", "v/00001.jpg,1", "v/00002.jpg,2", "v/00003.jpg,3"], "start at 00001")):
        (tmp_path / "s.csv").write_text("\n".join([formats.SUBMISSION_HEADER, *rows]) + "\n")
        assert needle in error_line(run(["score", "--submission", tmp_path / "s.csv", "--label-dir", tmp_path / "lab"]))


@pytest.mark.parametrize("env, needle", [
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"}, "is not below SLURM_ARRAY_TASK_COUNT=4"),
    ({"SLURM_ARRAY_TASK_ID": "x1", "SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM_ARRAY_TASK_ID='x1'"),
])
def test_a_slurm_task_past_the_count_or_not_a_number_is_an_error(feats, tmp_path, env, needle):
    proc = abaw("smooth", feats / "visual" / "v0.npy", "-o", tmp_path / "out/", env=env, check=False)
    assert proc.returncode == 2 and needle in proc.stderr.decode()


def test_extract_audio_too_short_or_nan(run, tmp_path):
    sf.write(tmp_path / "short.wav", np.zeros(300, np.float32), 16000)
    assert "shorter than one 25 ms feature frame" in error_line(run(["extract-audio", tmp_path / "short.wav",
                                                                     "-o", tmp_path / "s.npy"]))
    wav = np.zeros(16000, np.float32)
    wav[100] = np.nan
    sf.write(tmp_path / "nan.wav", wav, 16000, subtype="FLOAT")
    assert "NaN or Inf samples" in error_line(run(["extract-audio", tmp_path / "nan.wav", "-o", tmp_path / "n.npy"]))
    assert not (tmp_path / "s.npy").exists() and not (tmp_path / "n.npy").exists()


# ------------------------------------------------------- errors name the file and the fix
def test_broken_files_are_named(run, feats, tmp_path):
    T = len(formats.read_labels(str(feats / "labels" / "v0.txt")))
    good = np.load(feats / "visual" / "v0.npy")
    np.save(tmp_path / "ok.npy", good)
    raw = (tmp_path / "ok.npy").read_bytes()
    cases = {"truncated.npy": raw[: len(raw) // 2], "empty.npy": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * T, dtype=object), allow_pickle=True)
    for name in ("truncated.npy", "empty.npy", "objects.npy"):
        err = error_line(run(["align", tmp_path / name, "--frames", "10", "-o", tmp_path / "x.npy"]))
        assert str(tmp_path / name) in err and "Traceback" not in err
    big = tmp_path / "big.txt"
    big.write_text(formats.LABEL_HEADER + "\n0\n99999999999999999999999\n")
    err = error_line(run(["score", big, big]))
    assert f"{big}:3" in err and "outside" in err


def test_broken_model_config_and_corrupt_checkpoint(run, feats, tmp_path):
    from safetensors.torch import load_file, save_file

    _model(tmp_path / "m.safetensors")
    save_file(load_file(tmp_path / "m.safetensors"), tmp_path / "broken.safetensors",
              metadata={"abaw.config": "{not json", "format": "pt"})
    err = error_line(run(["infer", "-m", tmp_path / "broken.safetensors", "--visual", feats / "visual" / "v0.npy"]))
    assert "broken.safetensors" in err and "config" in err
    abaw("window", "--visual-dir", feats / "visual", "--audio-dir", feats / "audio", "--label-dir", feats / "labels",
         "-o", tmp_path / "t.csv")
    ckpt = tmp_path / "m2.safetensors.ckpt"
    ckpt.mkdir()
    (ckpt / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a zip")
    err = error_line(run(["train", tmp_path / "t.csv", "-o", tmp_path / "m2.safetensors", "--epochs", "1",
                          "--d-model", "16", "--layers", "1", "--heads", "2"]))
    assert "checkpoint.pt" in err and "delete" in err and "weights_only" not in err


# ---------------------------------------------------------------- one rule per convention
@pytest.mark.parametrize("args", [["align", "x.npy", "--frames", "5", "--fps", "0"],
                                  ["align", "x.npy", "--frames", "5", "--fps", "inf"],
                                  ["align", "x.npy", "--frames", "5", "--fps", "nan"],
                                  ["train", "t.csv", "-o", "m.safetensors", "--beta", "1"],
                                  ["train", "t.csv", "-o", "m.safetensors", "--lr", "nan"],
                                  ["smooth", "x.npy", "-k", "10"],
                                  ["extract-visual", "-", "-o", "v.npy"],
                                  ["extract-audio", "-", "-o", "a.npy"]])
def test_bad_option_values_are_usage_errors(run, tmp_path, monkeypatch, args):
    np.save(tmp_path / "x.npy", np.zeros((50, 4), np.float32))
    (tmp_path / "t.csv").write_text("video\n")
    monkeypatch.chdir(tmp_path)
    assert run(args).exit_code == 2


def test_outputs_go_into_new_folders_checked_before_the_work(run, feats, tmp_path):
    v, a = feats / "visual" / "v0.npy", feats / "audio" / "v0.npy"
    _model(tmp_path / "m.safetensors")
    assert run(["infer", "-m", tmp_path / "m.safetensors", "--visual", v, "--audio", a,
                "-o", tmp_path / "new" / "v1.npy"]).exit_code == 0
    assert np.load(tmp_path / "new" / "v1.npy").shape[1] == 8
    (tmp_path / "file").write_text("")
    err = error_line(run(["infer", "-m", tmp_path / "m.safetensors", "--visual", v, "--audio", a,
                          "-o", tmp_path / "file" / "v1.npy"]))
    assert "cannot create the folder" in err
    # a legal 244-character name, and no .part left behind, even from a killed run
    long = tmp_path / ("x" * 240 + ".npy")
    stale = tmp_path / f".{long.name[:100]}.999999999.abcdef.part"
    stale.write_bytes(b"left by a killed run")
    assert run(["smooth", tmp_path / "new" / "v1.npy", "--format", "npy", "-o", long]).exit_code == 0
    assert long.exists() and not list(tmp_path.glob(".*.part"))


# --------------------------------------------------------------- bf16 paths run on the CPU
def test_every_bf16_path_runs_on_cpu(run, feats, tmp_path):
    abaw("window", "--visual-dir", feats / "visual", "--audio-dir", feats / "audio", "--label-dir", feats / "labels",
         "-o", tmp_path / "t.csv")
    small = ["--epochs", "1", "--d-model", "16", "--layers", "1", "--heads", "2"]
    result = run(["train", tmp_path / "t.csv", "--val", tmp_path / "t.csv", "-o", tmp_path / "m.safetensors",
                  "--dtype", "bf16", "--device", "cpu", *small])
    assert result.exit_code == 0, result.stderr
    result = run(["infer", "-m", tmp_path / "m.safetensors", "--visual", feats / "visual" / "v0.npy",
                  "--audio", feats / "audio" / "v0.npy", "--dtype", "bf16", "-o", tmp_path / "l.npy"])
    assert result.exit_code == 0, result.stderr
    logits = np.load(tmp_path / "l.npy")
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    # the backbone paths: extraction in bf16, fine-tuning under bf16 autocast
    import imagedata

    from abawtools import demo

    backbone = demo.tiny_backbone(str(tmp_path / "vit"), "vit")
    imagedata.image_folder(str(tmp_path / "faces"), 3, np.random.default_rng(0))
    os.unlink(tmp_path / "faces" / "happy" / "0000.jpg")  # frames are numbered from 1 (0000 is refused)
    result = run(["extract-visual", tmp_path / "faces" / "happy", "--no-detect", "--model", backbone,
                  "--dtype", "bf16", "-o", tmp_path / "f.npy"])
    assert result.exit_code == 0, result.stderr
    assert np.isfinite(np.load(tmp_path / "f.npy")).all()
    result = run(["finetune", "--model", backbone, "--images", tmp_path / "faces", "-o", tmp_path / "ft",
                  "--epochs", "1", "--batch-size", "8", "--accumulate", "1", "--workers", "0", "--dtype", "bf16",
                  "--device", "cpu"])
    assert result.exit_code == 0, result.stderr


# ------------------------------------------------------------------ a job on the wrong node
@pytest.fixture(scope="module")
def model_and_manifest(feats, tmp_path_factory):
    root = tmp_path_factory.mktemp("device")
    save_model(str(root / "m.safetensors"),
               build_model(ModelConfig(visual_dim=8, audio_dim=4, d_model=16, layers=1, heads=2)))
    abaw("window", "--visual-dir", feats / "visual", "--audio-dir", feats / "audio", "--label-dir", feats / "labels",
         "-o", root / "t.csv")
    return {"MODEL": root / "m.safetensors", "TRAIN": root / "t.csv", "v.npy": feats / "visual" / "v0.npy"}


@pytest.mark.parametrize("command", [["extract-visual", "x.mp4"], ["extract-audio", "x.wav", "--model", "m"],
                                     ["infer", "-m", "MODEL", "--visual", "v.npy"],
                                     ["train", "TRAIN", "--epochs", "1"]])
def test_a_device_that_is_not_here_fails_first_in_one_line(run, model_and_manifest, tmp_path, command):
    """--device bogus is bad usage (exit 2); --device cuda on a node without a GPU is one error
    line (exit 1) before any work, whichever command is given it."""
    command = [model_and_manifest.get(a, a) for a in command]
    result = run([*command, "--device", "bogus", "-o", tmp_path / "o.npy"])
    assert result.exit_code == 2 and "'bogus' is not a device" in result.stderr, result.stderr
    if torch.cuda.is_available():
        return
    result = run([*command, "--device", "cuda:0", "-o", tmp_path / "o.npy"])
    assert "--device cuda:0: no CUDA GPU is usable here" in error_line(result)
    assert not (tmp_path / "o.npy").exists() and not (tmp_path / "o.npy.ckpt").exists()


# ------------------------------------------------------- overflow is an error, never "no face"
@pytest.fixture(scope="module")
def huge_backbone(tmp_path_factory):
    """A tiny ResNet whose last stage's activations are scaled by 1e5: features ~1e9."""
    import transformers

    from abawtools import demo

    path = demo.tiny_backbone(str(tmp_path_factory.mktemp("huge") / "resnet"), "resnet")
    model = transformers.ResNetModel.from_pretrained(path)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d) and "stages.1" in name:
                module.weight.mul_(1e5)
                module.bias.mul_(1e5)
    model.save_pretrained(path)
    return path


def test_features_beyond_float16_are_an_error_not_missing_faces(run, huge_backbone, tmp_path):
    import imagedata

    imagedata.image_folder(str(tmp_path / "faces"), 3, np.random.default_rng(0))
    crops = tmp_path / "faces" / "happy"
    os.unlink(crops / "0000.jpg")  # 0001.jpg, 0002.jpg: frames 0, 1 (a folder numbered from 0 is refused)
    base = ["extract-visual", crops, "--no-detect", "--model", huge_backbone]
    result = run([*base, "--save-dtype", "float16", "-o", tmp_path / "f16.npy"])
    assert "do not fit in float16; use --save-dtype float32" in error_line(result)
    result = run([*base, "--dtype", "fp16", "-o", tmp_path / "h.npy"])
    assert "the model gave NaN or Inf for 2 of 2 faces; fp16 overflows: use --dtype bf16 or fp32" in error_line(result)
    assert not (tmp_path / "f16.npy").exists() and not (tmp_path / "h.npy").exists()
    assert run([*base, "-o", tmp_path / "f32.npy"]).exit_code == 0
    feats = np.load(tmp_path / "f32.npy")
    assert np.isfinite(feats[1:]).all() and np.abs(feats).max() > 1e6

import io
import os

import cv2
import numpy as np
import pytest
import soundfile as sf
from conftest import FACE_PNG, abaw, invoke, write_label_file

from abawtools import audio, demo, visual


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A real H.264/AAC clip: the fixture face moving, with stretches where it leaves the frame."""
    root = tmp_path_factory.mktemp("clip")
    rng = np.random.default_rng(0)
    T = 60
    labels = np.repeat([0, 3, 5, 1], 15)
    faceless = np.zeros(T, bool)
    faceless[20:32] = True
    face = demo.load_face(FACE_PNG)
    demo.write_clip(str(root / "clip.mp4"), labels, faceless, face, rng)
    demo.write_clip(str(root / "silent.mp4"), labels[:20], faceless[:20], face, rng, with_audio=False)
    return root, T, faceless


def test_fixture_face_is_found():
    img = cv2.imread(FACE_PNG)
    x, y, w, h = visual.FaceCropper(detect_width=1000).find(img)
    assert abs(x - 177) < 15 and abs(y - 66) < 15 and abs(w - 95) < 20


def test_extract_visual_video_marks_faceless_frames(clip, tmp_path):
    root, T, faceless = clip
    proc = abaw("extract-visual", root / "clip.mp4", "-o", tmp_path / "v.npy")
    feats = np.load(tmp_path / "v.npy")
    assert feats.shape == (T, 1764) and feats.dtype == np.float32
    found = np.isfinite(feats).all(axis=1)
    assert (found == ~faceless).mean() >= 0.9, found.astype(int)
    assert not found[22:30].any()  # the stretch without a face is NaN
    assert b"without a face" in proc.stderr


def test_a_source_far_from_t_is_said(clip, tmp_path, run):
    """T rules (rows cut or NaN-padded to it); a video or a crop folder far from it is probably
    paired with the wrong label file: a warning naming both. Crops ending early are normal."""
    root, T, _ = clip
    for frames, warned in ((T, False), (T + 2, False), (T + 10, True), (T - 10, True)):
        result = run(["extract-visual", root / "clip.mp4", "--frames", frames, "-o", tmp_path / "v.npy"])
        assert result.exit_code == 0 and np.load(tmp_path / "v.npy").shape[0] == frames
        assert (f"has {T} frames, T is {frames}" in result.stderr) == warned, result.stderr
    folder = tmp_path / "crops" / "c"
    folder.mkdir(parents=True)
    for t in (1, 2, 30):
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), demo.load_face(FACE_PNG, size=64))
    for frames, warned in ((40, False), (31, False), (20, True)):
        result = run(["extract-visual", folder, "--no-detect", "--frames", frames, "-o", tmp_path / "c.npy"])
        assert result.exit_code == 0 and ("images up to frame 30, past T = 20" in result.stderr) == warned


def test_extract_visual_same_result_with_any_number_of_workers(clip):
    root = clip[0]
    source, cropper, hog = visual.open_source(str(root / "clip.mp4")), visual.FaceCropper(visual.HogExtractor.spec), visual.HogExtractor()
    one = visual.extract(source, hog, cropper, batch_size=16, workers=1)
    for _ in range(3):  # threads race differently every run
        many = visual.extract(visual.open_source(str(root / "clip.mp4")), hog, cropper, batch_size=16, workers=4)
        np.testing.assert_array_equal(many, one)


def test_extract_visual_frame_folder_missing_and_corrupt(tmp_path, run):
    face = demo.load_face(FACE_PNG, size=112)
    folder = tmp_path / "cropped_aligned" / "7_left"
    folder.mkdir(parents=True)
    for t in range(1, 11):
        if t == 4:
            continue  # no crop for frame 4: missing
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), np.roll(face, t, axis=1))
    (folder / "00007.jpg").write_bytes(b"not a jpeg")
    res = run(["extract-visual", folder, "--no-detect", "-o", tmp_path / "v.npy"])
    assert res.exit_code == 0, res.stderr
    feats = np.load(tmp_path / "v.npy")
    assert feats.shape == (10, 1764)
    missing = ~np.isfinite(feats).all(axis=1)
    np.testing.assert_array_equal(np.flatnonzero(missing), [3, 6])
    assert "1 unreadable" in res.stderr
    # the built-in feature is exactly OpenCV's HOG of the grey 64x64 crop
    crop = cv2.resize(cv2.imread(str(folder / "00001.jpg")), (64, 64), interpolation=cv2.INTER_AREA)
    ref = cv2.HOGDescriptor((64, 64), (16, 16), (8, 8), (8, 8), 9).compute(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))
    np.testing.assert_allclose(feats[0], ref.reshape(-1), atol=1e-6)
    # --like / --frames match an annotation file: padded with NaN or cut
    write_label_file(tmp_path / "l.txt", [0] * 12)
    assert run(["extract-visual", folder, "--no-detect", "--like", tmp_path / "l.txt", "-o", tmp_path / "w.npy"]).exit_code == 0
    w = np.load(tmp_path / "w.npy")
    assert w.shape == (12, 1764) and np.isnan(w[10:]).all()


def _tiny_vision(tmp_path, kind):
    from transformers import BeitConfig, BeitModel, ViTConfig, ViTModel

    if kind == "beit":
        model = BeitModel(BeitConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     image_size=64, patch_size=16, use_mean_pooling=True))
    else:
        model = ViTModel(ViTConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                                   image_size=32, patch_size=8))
    path = tmp_path / kind
    model.save_pretrained(path)
    size = model.config.image_size
    (path / "preprocessor_config.json").write_text(
        '{"do_resize": true, "size": {"height": %d, "width": %d}, "do_normalize": true, '
        '"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_rescale": true, '
        '"rescale_factor": 0.00392156862745098}' % (size, size)
    )
    return path, model.eval()


@pytest.mark.parametrize("kind", ["beit", "vit"])
def test_extract_visual_hf_model_from_folder(tmp_path, kind):
    import torch

    path, model = _tiny_vision(tmp_path, kind)
    face = demo.load_face(FACE_PNG, size=112)
    folder = tmp_path / "crops" / "v1"
    folder.mkdir(parents=True)
    for t in range(1, 4):
        cv2.imwrite(str(folder / f"{t:05d}.png"), face)
    invoke("extract-visual", folder, "--no-detect", "--model", path, "--batch-size", "2", "-o", tmp_path / "f.npy")
    feats = np.load(tmp_path / "f.npy")
    assert feats.shape == (3, model.config.hidden_size)
    # independent pre-processing: resize, scale to [0, 1], normalise with mean = std = 0.5
    size = model.config.image_size
    rgb = cv2.cvtColor(cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    x = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        ref = model(pixel_values=x).pooler_output[0].numpy()
    np.testing.assert_allclose(feats[0], ref, atol=1e-4)


def test_extract_audio_fbank_from_video_and_wav(clip, tmp_path):
    root, T, _ = clip
    feats = np.load(io.BytesIO(abaw("extract-audio", root / "clip.mp4").stdout))
    duration = T / demo.FPS
    assert abs(len(feats) - duration * 50) <= 3 and feats.shape[1] == 80
    assert np.isfinite(feats).all()
    # a 44.1 kHz stereo WAV: resampled to 16 kHz, rows = (N - 400) // 320 + 1
    sr = 44100
    t = np.arange(int(1.5 * sr)) / sr
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    sf.write(tmp_path / "tone.wav", np.stack([tone, tone], 1), sr)
    wav = audio.load_audio(str(tmp_path / "tone.wav"))
    assert len(wav) == 24000
    feats = np.load(io.BytesIO(abaw("extract-audio", tmp_path / "tone.wav").stdout))
    assert len(feats) == (24000 - 400) // 320 + 1
    # the strongest mel band is the one whose centre is nearest 1 kHz
    mel = 2595 * np.log10(1 + np.linspace(20, 8000, 82) / 700)
    centres = 700 * (10 ** (np.linspace(mel[0], mel[-1], 82)[1:-1] / 2595) - 1)
    assert abs(int(np.median(feats.argmax(1))) - int(np.abs(centres - 1000).argmin())) <= 1


def test_extract_audio_no_track_is_one_line_error(clip, tmp_path):
    root, _, _ = clip
    proc = abaw("extract-audio", root / "silent.mp4", "-o", tmp_path / "a.npy", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().endswith("silent.mp4: no audio track\n") and proc.stderr.count(b"\n") == 1
    assert not (tmp_path / "a.npy").exists()


def _tiny_speech(tmp_path, layers):
    from transformers import Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel

    if layers == 0:  # conv front end (per-frame LayerNorm, as in the large models) + positional conv only
        model = Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=0, num_attention_heads=2,
                                             intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                             num_conv_pos_embedding_groups=4, feat_extract_norm="layer"))
    else:
        model = WavLMModel(WavLMConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                                       intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                                       num_conv_pos_embedding_groups=4))
    path = tmp_path / f"speech{layers}"
    model.save_pretrained(path)
    return path


def test_chunked_equals_unchunked_small_receptive_field(tmp_path):
    path = _tiny_speech(tmp_path, 0)
    speech = audio.SpeechModel(str(path))
    wav = np.random.default_rng(0).normal(size=16000 * 7 + 123).astype(np.float32)
    whole = speech(wav)
    assert len(whole) == audio.num_rows(len(wav))
    chunked = audio.chunked_features(wav, speech, chunk_seconds=1.3, context_seconds=1.0)
    np.testing.assert_allclose(chunked, whole, atol=1e-4)


def test_extract_audio_wavlm_folder_cli(tmp_path):
    path = _tiny_speech(tmp_path, 2)
    sr = 16000
    sf.write(tmp_path / "s.wav", np.random.default_rng(1).normal(size=3 * sr).astype(np.float32) * 0.1, sr)
    result = invoke("extract-audio", tmp_path / "s.wav", "--model", path, "--chunk-seconds", "1", "-o", tmp_path / "a.npy")
    feats = np.load(tmp_path / "a.npy")
    assert feats.shape == (149, 32) and np.isfinite(feats).all()  # STACK.md: 149 rows for 3 s
    assert result.stdout == ""


def test_a_speech_model_giving_nan_is_an_error_not_missing_audio(tmp_path, run):
    import torch
    from transformers import Wav2Vec2Model

    path = _tiny_speech(tmp_path, 0)
    model = Wav2Vec2Model.from_pretrained(path)
    with torch.no_grad():
        model.feature_projection.projection.weight[0, 0] = float("nan")  # broken weights
    model.save_pretrained(path)
    sf.write(tmp_path / "s.wav", np.random.default_rng(1).normal(size=16000).astype(np.float32) * 0.1, 16000)
    result = run(["extract-audio", tmp_path / "s.wav", "--model", path, "-o", tmp_path / "a.npy"])
    err = result.stderr
    assert result.exit_code == 1 and err.count("\n") == 1, err
    assert "the model gave NaN or Inf for 49 of 49 audio rows; are the model's weights finite?" in err
    assert not (tmp_path / "a.npy").exists()


def test_bad_model_folder_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    sf.write(tmp_path / "s.wav", np.zeros(16000, np.float32), 16000)
    result = invoke("extract-audio", tmp_path / "s.wav", "--model", tmp_path / "empty", check=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "cannot load speech model" in result.stderr


def test_many_inputs_sharded_exactly_once(clip, tmp_path):
    root, _, _ = clip
    inputs = [root / "clip.mp4", root / "silent.mp4"]
    outs = []
    for s in ("0/2", "1/2"):
        d = tmp_path / s.replace("/", "of")
        abaw("extract-visual", *inputs, "-o", d, "--shard", s)
        outs += os.listdir(d)
    assert sorted(outs) == ["clip.npy", "silent.npy"]
    # SLURM array variables pick the shard when --shard is not given
    d = tmp_path / "slurm"
    abaw("extract-visual", *inputs, "-o", d, env={"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"})
    assert len(os.listdir(d)) == 1
    # --skip-existing leaves finished outputs alone
    before = os.path.getmtime(d / os.listdir(d)[0])
    abaw("extract-visual", *inputs, "-o", d, "--skip-existing", env={"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"})
    assert os.path.getmtime(d / os.listdir(d)[0]) == before


@pytest.mark.parametrize("command", ["extract-visual", "extract-audio"])
def test_corrupt_media_is_one_line_and_writes_nothing(tmp_path, command):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    proc = abaw(command, tmp_path / "broken.mp4", "-o", tmp_path / "out.npy", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.startswith(f"abaw {command}: error: ") and err.count("\n") == 1, err
    assert "broken.mp4" in err and not (tmp_path / "out.npy").exists()

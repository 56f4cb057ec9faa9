"""The default network is the authors' (GitHub Hathaway1027/abaw26-expr, dual_window_att_model/
model.py): checked against an independent statement of their forward pass in plain torch, weights
copied across; files written by abawtools 0.1.0 keep their architecture and logits; ensembles."""

import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import abaw, invoke, make_feature_set

from abawtools.model import ModelConfig, build_model, load_model, sinusoidal_positions

HERE = os.path.dirname(os.path.abspath(__file__))
LEGACY = os.path.join(HERE, "data", "legacy-0.1")


# ------------------------------------------------- their forward pass, stated independently
class TheirCross(nn.Module):
    """nn.MultiheadAttention, residual + LayerNorm, GELU feed-forward, residual + LayerNorm; a key
    set that is all padding gets its first key unmasked and the attention output zeroed."""

    def __init__(self, d, heads):
        super().__init__()
        self.mha = nn.MultiheadAttention(d, heads, dropout=0.1, batch_first=True)
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(0.1), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(0.1)

    def forward(self, q, kv, pad=None):
        empty = None
        if pad is not None:
            empty = pad.all(dim=1)
            pad = pad.clone()
            pad[empty, 0] = False
        y, _ = self.mha(q, kv, kv, key_padding_mask=pad)
        if empty is not None:
            y = y.masked_fill(empty[:, None, None], 0.0)
        q = self.n1(q + self.drop(y))
        return self.n2(q + self.drop(self.ff(q)))


class Theirs(nn.Module):
    def __init__(self, dv, da, d=256, heads=8, layers=3):
        super().__init__()
        self.d = d
        self.v_proj, self.a_proj = nn.Linear(dv, d), nn.Linear(da, d)

        def encoder():
            layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, batch_first=True)
            return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

        self.v_enc, self.a_enc = encoder(), encoder()
        self.v2a, self.a2v = TheirCross(d, heads), TheirCross(d, heads)
        self.gate_v, self.gate_a = nn.Linear(2 * d, 1), nn.Linear(2 * d, 1)
        self.cls = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(0.1), nn.Linear(d, 8))

    def forward(self, v, a, v_mask):
        pad = ~v_mask
        pe = sinusoidal_positions(v.shape[1], self.d)
        hv = self.v_enc(self.v_proj(v) + pe, src_key_padding_mask=pad)
        ha = self.a_enc(self.a_proj(a) + pe)
        v2a = self.v2a(hv, ha)
        a2v = self.a2v(ha, hv, pad)
        gv = torch.sigmoid(self.gate_v(torch.cat([hv, v2a], -1)))
        ga = torch.sigmoid(self.gate_a(torch.cat([ha, a2v], -1)))
        fv = (gv * hv + (1 - gv) * v2a) * v_mask[..., None].float()
        fa = ga * ha + (1 - ga) * a2v
        return self.cls(torch.cat([fv, fa], -1))


def _copy_attention(ours, mha):
    d = mha.embed_dim
    ours.q.weight.copy_(mha.in_proj_weight[:d])
    ours.q.bias.copy_(mha.in_proj_bias[:d])
    ours.kv.weight.copy_(mha.in_proj_weight[d:])
    ours.kv.bias.copy_(mha.in_proj_bias[d:])
    ours.out.load_state_dict(mha.out_proj.state_dict())


@torch.no_grad()
def _theirs_into_ours(theirs, ours):
    ours.v_proj.load_state_dict(theirs.v_proj.state_dict())
    ours.a_proj.load_state_dict(theirs.a_proj.state_dict())
    for mine, enc in ((ours.v_layers, theirs.v_enc), (ours.a_layers, theirs.a_enc)):
        for layer, t in zip(mine, enc.layers):
            _copy_attention(layer.attn, t.self_attn)
            layer.ffn[0].load_state_dict(t.linear1.state_dict())
            layer.ffn[3].load_state_dict(t.linear2.state_dict())
            layer.norm1.load_state_dict(t.norm1.state_dict())
            layer.norm2.load_state_dict(t.norm2.state_dict())
    for mine, t in ((ours.v_to_a, theirs.v2a), (ours.a_to_v, theirs.a2v)):
        _copy_attention(mine.attn, t.mha)
        mine.norm.load_state_dict(t.n1.state_dict())
        mine.norm2.load_state_dict(t.n2.state_dict())
        mine.ffn.load_state_dict(t.ff.state_dict())
    ours.v_gate.proj.load_state_dict(theirs.gate_v.state_dict())
    ours.a_gate.proj.load_state_dict(theirs.gate_a.state_dict())
    ours.head.load_state_dict(theirs.cls.state_dict())


def test_parameter_count_is_the_authors():
    ours = build_model(ModelConfig(visual_dim=1024, audio_dim=1024, d_model=256, layers=3, heads=8))
    theirs = Theirs(1024, 1024)
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in theirs.parameters()) == 6_977_290


def test_same_logits_as_their_forward_pass():
    torch.manual_seed(0)
    dv, da, W, B = 24, 20, 32, 5
    theirs = Theirs(dv, da, d=32, heads=4, layers=2).eval()
    ours = build_model(ModelConfig(visual_dim=dv, audio_dim=da, d_model=32, heads=4, layers=2, window=W)).eval()
    _theirs_into_ours(theirs, ours)
    g = torch.Generator().manual_seed(1)
    v, a = torch.randn(B, W, dv, generator=g), torch.randn(B, W, da, generator=g)
    v_mask = torch.rand(B, W, generator=g) > 0.4  # partly missing faces
    v_mask[:, 0] = True
    v = torch.where(v_mask[..., None], v, torch.zeros(()))  # theirs reads zeros where there is no face
    with torch.no_grad():
        expected = theirs(v, a, v_mask)
        got = ours(v, a, v_mask, torch.ones(B, W, dtype=torch.bool))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # a window without any face: theirs is NaN (its self-attention has no key), ours stays finite
    v_mask[2] = False
    with torch.no_grad():
        assert torch.isnan(theirs(v, a, v_mask)[2]).all()
        assert torch.isfinite(ours(v, a, v_mask, torch.ones(B, W, dtype=torch.bool))).all()


@pytest.mark.parametrize("arch", ["dual", "baseline"])
def test_files_written_by_0_1_give_the_same_logits(arch):
    model, _ = load_model(os.path.join(LEGACY, f"{arch}.safetensors"))
    assert model.cfg.cross_ffn is False and model.cfg.gate == "channel" and model.cfg.activation == "gelu"
    x = np.load(os.path.join(LEGACY, "inputs.npz"))
    c = model.cfg.audio_context
    audio, a_mask = (x["audio"], x["audio_mask"]) if c else (x["audio"][:, 4:-4], x["audio_mask"][:, 4:-4])
    with torch.no_grad():
        logits = model(*(torch.from_numpy(t) for t in (x["visual"], audio, x["visual_mask"], a_mask)))
    # The same numbers up to float32 rounding: the kernels torch picks differ by CPU (AVX2 / AVX-512),
    # which moves the last bit (measured: 1.5e-7 on a Xeon without AVX-512); a changed model differs by far more.
    expected = np.load(os.path.join(LEGACY, f"{arch}-logits.npy"))
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert (logits.numpy().argmax(-1) == expected.argmax(-1)).all()


def test_legacy_variant_is_one_flag_away(tmp_path):
    make_feature_set(tmp_path / "d", np.random.default_rng(0), n_videos=2, t_range=(70, 90))
    d = tmp_path / "d"
    abaw("window", "--visual-dir", d / "visual", "--audio-dir", d / "audio", "--label-dir", d / "labels",
         "-o", tmp_path / "t.csv")
    small = ["--epochs", "1", "--d-model", "16", "--layers", "1", "--heads", "2"]
    invoke("train", tmp_path / "t.csv", "-o", tmp_path / "new.safetensors", *small)
    invoke("train", tmp_path / "t.csv", "-o", tmp_path / "old.safetensors", *small, "--no-cross-ffn", "--gate", "channel",
         "--no-zero-faceless", "--activation", "gelu")
    new, old = load_model(str(tmp_path / "new.safetensors"))[0], load_model(str(tmp_path / "old.safetensors"))[0]
    assert (new.cfg.cross_ffn, new.cfg.gate, new.cfg.zero_faceless, new.cfg.activation) == (True, "frame", True, "relu")
    assert (old.cfg.cross_ffn, old.cfg.gate, old.cfg.zero_faceless, old.cfg.activation) == \
        (False, "channel", False, "gelu")


# ------------------------------------------------------------------------------ ensembles
@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    make_feature_set(root / "d", np.random.default_rng(0), n_videos=3, t_range=(90, 130))
    d = root / "d"
    abaw("window", "--visual-dir", d / "visual", "--audio-dir", d / "audio", "--label-dir", d / "labels",
         "-o", root / "t.csv")
    paths = []
    for i, extra in enumerate((["--d-model", "16", "--layers", "1"], ["--d-model", "32", "--layers", "1"],
                               ["--arch", "baseline", "--d-model", "16"])):
        p = root / f"m{i}.safetensors"
        invoke("train", root / "t.csv", "-o", p, "--epochs", "1", "--heads", "2", "--seed", str(i), *extra)
        paths.append(p)
    return root, paths


def test_ensemble_is_the_weighted_mean_of_the_members(members, tmp_path):
    root, paths = members
    v, a = root / "d" / "visual" / "v0.npy", root / "d" / "audio" / "v0.npy"
    outs = []
    for i, p in enumerate(paths):
        invoke("infer", "-m", p, "--visual", v, "--audio", a, "-S", "4", "-o", tmp_path / f"l{i}.npy")
        outs.append(np.load(tmp_path / f"l{i}.npy"))
    args = [x for p in paths for x in ("-m", p)]
    invoke("infer", *args, "--weights", "0.3,0.3,0.4", "--visual", v, "--audio", a, "-S", "4", "-o", tmp_path / "e.npy")
    expected = 0.3 * outs[0] + 0.3 * outs[1] + 0.4 * outs[2]
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), expected, rtol=1e-5, atol=1e-6)
    invoke("infer", *args, "--visual", v, "--audio", a, "-S", "4", "-o", tmp_path / "eq.npy")  # equal weights
    np.testing.assert_allclose(np.load(tmp_path / "eq.npy"), sum(outs) / 3, rtol=1e-5, atol=1e-6)


def test_huge_finite_weights_are_the_same_mean_not_nan(members, tmp_path):
    """1e308 each: finite, but their sum overflows (before: all-NaN logits, exit 0)."""
    root, paths = members
    v, a = root / "d" / "visual" / "v0.npy", root / "d" / "audio" / "v0.npy"
    args = [x for p in paths for x in ("-m", p)]
    invoke("infer", *args, "--visual", v, "--audio", a, "-S", "4", "-o", tmp_path / "eq.npy")
    invoke("infer", *args, "--weights", "1e308,1e308,1e308", "--visual", v, "--audio", a, "-S", "4",
           "-o", tmp_path / "big.npy")
    big = np.load(tmp_path / "big.npy")
    assert np.isfinite(big).all()
    np.testing.assert_allclose(big, np.load(tmp_path / "eq.npy"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weights", ["0.5,0.5", "0.3,-0.3,1", "0,0,0", "a,b,c"])
def test_bad_weights_are_usage_errors(members, weights):
    root, paths = members
    args = [x for p in paths for x in ("-m", p)]
    result = invoke("infer", *args, "--weights", weights, "--visual", root / "d" / "visual" / "v0.npy",
                    "--audio", root / "d" / "audio" / "v0.npy", check=False)
    assert result.exit_code == 2, result.stderr


def test_members_with_other_feature_sizes_name_the_model(members, tmp_path):
    root, paths = members
    make_feature_set(tmp_path / "o", np.random.default_rng(3), n_videos=1, dv=6, t_range=(70, 80))
    o = tmp_path / "o"
    abaw("window", "--visual-dir", o / "visual", "--audio-dir", o / "audio", "--label-dir", o / "labels",
         "-o", tmp_path / "o.csv")
    other = tmp_path / "other.safetensors"
    invoke("train", tmp_path / "o.csv", "-o", other, "--epochs", "1", "--d-model", "16", "--layers", "1", "--heads", "2")
    result = invoke("infer", "-m", paths[0], "-m", other, "--visual", root / "d" / "visual" / "v0.npy",
                    "--audio", root / "d" / "audio" / "v0.npy", check=False)
    err = result.stderr
    assert result.exit_code == 1 and err.count("\n") == 1 and "other.safetensors" in err, err


def test_mean_filter_27_matches_replicate_padded_average_pooling(tmp_path):
    x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    np.save(tmp_path / "l.npy", x)
    abaw("smooth", tmp_path / "l.npy", "--method", "mean", "-k", "27", "--format", "npy", "-o", tmp_path / "s.npy")
    t = torch.from_numpy(x).T[None]
    ref = torch.nn.functional.avg_pool1d(torch.nn.functional.pad(t, (13, 13), mode="replicate"), 27, stride=1)
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), ref[0].T.numpy(), rtol=1e-5, atol=1e-6)

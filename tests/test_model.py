import numpy as np
import pytest
import torch
import torch.nn.functional as F

from abawtools import loss
from abawtools.model import ModelConfig, build_model, load_model, save_model


def tiny(arch="dual", **kw):
    cfg = ModelConfig(arch=arch, visual_dim=10, audio_dim=6, d_model=16, layers=2, heads=4, window=16,
                      audio_context=3 if arch == "baseline" else 0, **kw)
    torch.manual_seed(0)
    return build_model(cfg)


def batch(model, B=3, missing=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    W = cfg.window
    Wa = W + 2 * cfg.audio_context
    v = torch.randn(B, W, cfg.visual_dim, generator=g)
    a = torch.randn(B, Wa, cfg.audio_dim, generator=g)
    vm = torch.rand(B, W, generator=g) > missing
    am = torch.ones(B, Wa, dtype=torch.bool)
    y = torch.randint(-1, 8, (B, W), generator=g)
    return v, a, vm, am, y


@pytest.mark.parametrize("arch", ["dual", "baseline"])
@pytest.mark.parametrize("train_mode", [True, False])
def test_no_nan_with_all_visual_missing(arch, train_mode):
    model = tiny(arch)
    model.train(train_mode)
    v, a, vm, am, y = batch(model)
    vm[:] = False
    v[:] = float("nan")  # what a missing row looks like on disk
    logits = model(v, a, vm, am)
    assert torch.isfinite(logits).all()
    out = loss.focal_loss(logits, y, 2.0, torch.rand(8) + 0.5)
    out.backward()
    assert torch.isfinite(out)
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("arch", ["dual", "baseline"])
def test_no_audio_and_no_visual_at_all_still_finite(arch):
    model = tiny(arch).eval()
    v, a, vm, am, y = batch(model)
    am[:] = False
    assert torch.isfinite(model(v, a, vm, am)).all()
    vm[:] = False
    assert torch.isfinite(model(v, a, vm, am)).all()


@pytest.mark.parametrize("arch", ["dual", "baseline"])
def test_masked_frame_values_do_not_matter(arch):
    model = tiny(arch).eval()
    v, a, vm, am, y = batch(model, missing=0.4)
    vm[1] = False  # one window with no face at all
    am[2, :5] = False
    ref = model(v, a, vm, am)
    v2, a2 = v.clone(), a.clone()
    v2[~vm] = torch.randn(int((~vm).sum()), v.shape[-1]) * 100
    a2[~am] = 1e6
    torch.testing.assert_close(model(v2, a2, vm, am), ref, rtol=0, atol=0)
    # and the masked values really are read otherwise: changing a present frame changes the output
    v2[vm] += 1.0
    assert not torch.allclose(model(v2, a2, vm, am), ref)


@pytest.mark.parametrize("cross_ffn", [True, False])
def test_safe_attention_window_without_face_uses_audio_only(cross_ffn):
    """With no visual key, A->V's attention sublayer reduces to LayerNorm(H_a) (§3.4): the audio
    stream passes intact (through the block's feed-forward sublayer, in the authors' block)."""
    model = tiny(cross_ffn=cross_ffn).eval()
    v, a, vm, am, _ = batch(model, B=1)
    vm[:] = False
    captured = {}
    model.a_to_v.register_forward_hook(lambda m, inp, out: captured.update(q=inp[0], out=out))
    model.a_to_v.attn.register_forward_hook(lambda m, inp, out: captured.update(attn=out))
    model(v, a, vm, am)
    assert (captured["attn"] == 0).all()
    block = model.a_to_v
    h = block.norm(captured["q"])
    expected = block.norm2(h + block.ffn(h)) if cross_ffn else h
    torch.testing.assert_close(captured["out"], expected)


def test_modality_dropout_masks_whole_windows():
    model = tiny(modality_dropout=1.0)
    v, a, vm, am, _ = batch(model)
    out1 = model.eval()(v, a, torch.zeros_like(vm), am)  # no face anywhere
    # train mode with p=1 and every other dropout off: every window loses its visual stream
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for layer in list(model.v_layers) + list(model.a_layers) + [model.v_to_a, model.a_to_v]:
        (layer.attn if hasattr(layer, "attn") else layer).dropout = 0.0
    out2 = model(v, a, vm, am)
    torch.testing.assert_close(out1, out2)


def test_focal_gamma0_unit_weights_is_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 8, generator=g)
    y = torch.randint(-1, 8, (50,), generator=g)
    ours = loss.focal_loss(logits, y, gamma=0.0, weight=torch.ones(8))
    torch.testing.assert_close(ours, F.cross_entropy(logits, y, ignore_index=-1))


def test_focal_matches_eq5_and_pt_does_not_depend_on_weights():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(40, 8, generator=g)
    y = torch.randint(-1, 8, (40,), generator=g)
    w = torch.rand(8, generator=g) * 3 + 0.1
    # Eq. 5 by hand, frame by frame
    terms = []
    for row, t in zip(logits.tolist(), y.tolist()):
        if t == -1:
            continue
        e = np.exp(np.array(row) - max(row))
        p = e[t] / e.sum()
        terms.append(w[t].item() * -((1 - p) ** 2) * np.log(p))
    expected = sum(terms) / len(terms)
    assert loss.focal_loss(logits, y, 2.0, w).item() == pytest.approx(expected, rel=1e-5)
    # the public implementation's p_t = exp(-weighted CE) is a different quantity
    ce_w = F.cross_entropy(logits, y, weight=w, ignore_index=-1, reduction="none")
    wrong = ((1 - torch.exp(-ce_w)) ** 2 * ce_w)[y >= 0].mean().item()
    assert abs(wrong - expected) > 1e-3


def test_focal_no_valid_frame_is_zero_with_gradient():
    logits = torch.randn(5, 8, requires_grad=True)
    out = loss.focal_loss(logits, torch.full((5,), -1))
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_effective_number_weights_by_hand():
    counts = [1000, 10, 0, 1]
    beta = 0.99
    raw = [(1 - beta) / (1 - beta**n) for n in (1000, 10, 1)]
    s = sum(raw)
    expected = [raw[0] * 3 / s, raw[1] * 3 / s, 0.0, raw[2] * 3 / s]
    np.testing.assert_allclose(loss.effective_number_weights(counts, beta), expected, rtol=1e-12)
    w = loss.effective_number_weights([5, 5, 5, 5, 5, 5, 5, 5], 0.9999)
    np.testing.assert_allclose(w, np.ones(8))


def test_model_file_is_safetensors_with_config(tmp_path):
    import json
    import struct

    model = tiny("dual")
    with torch.no_grad():
        model.v_norm.mean.fill_(0.5)
    path = tmp_path / "m.safetensors"
    save_model(str(path), model, extra={"training": {"epochs": 1}})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert json.loads(header["__metadata__"]["abaw.config"])["d_model"] == 16
    assert b"\x80\x04" not in raw[:16]  # not a pickle
    loaded, info = load_model(str(path))
    assert info["training"] == {"epochs": 1} and info["classes"][0] == "Neutral"
    v, a, vm, am, _ = batch(model)
    torch.testing.assert_close(loaded(v, a, vm, am), model.eval()(v, a, vm, am))
    assert float(loaded.v_norm.mean[0]) == 0.5


def test_inverse_sqrt_weights_by_hand():
    counts = np.array([100, 25, 0, 4, 1, 16, 9, 36], float)
    raw = np.array([0.1, 0.2, 0.0, 0.5, 1.0, 0.25, 1 / 3, 1 / 6])
    expected = raw * 7 / raw.sum()
    expected[2] = 0.0
    np.testing.assert_allclose(loss.inverse_sqrt_weights(counts), expected, rtol=1e-12)

"""The models, in one file: the dual-branch audio-visual transformer (paper §3.3-3.4) and the
frame-level two-stream MLP baseline (§4.3).

Both take a batch of windows and return per-frame logits:

    logits = model(visual, audio, visual_mask, audio_mask)    # (B, W, 8)

visual (B, W, Dv) and audio (B, W', Da) are raw features (normalisation is inside the model, from
statistics stored with it); the masks are True where a frame is present. Values at masked frames
are ignored: they are replaced by zeros before anything reads them.

The default dual-branch network is the authors' (GitHub Hathaway1027/abaw26-expr,
abaw_model/dual_window_att_model/model.py), where the paper leaves details open: cross-attention
blocks with a feed-forward sublayer, a gate of one value per frame, the fused visual stream zeroed
at frames without a face, ReLU encoder layers. Each is a config field, so the variant of abawtools
0.1.0 (and every file it wrote) stays one flag away. What abawtools adds: feature standardisation
inside the model, masked audio frames, and safe attention in the self-attention layers too, so a
window without any face stays finite (theirs gives NaN there).
"""

import json
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    arch: str = "dual"  # "dual" (the paper's network) or "baseline" (two-stream MLP)
    visual_dim: int = 1024
    audio_dim: int = 1024
    num_classes: int = 8
    d_model: int = 256
    layers: int = 3  # self-attention layers per branch
    heads: int = 8
    ffn_mult: int = 4
    dropout: float = 0.1
    modality_dropout: float = 0.1  # p: a training window loses its whole visual stream
    window: int = 64  # W and S are what the model was trained with; infer uses them by default
    stride: int = 8
    fusion_lambda: float = 0.7  # baseline: logits = lambda * visual + (1 - lambda) * audio
    audio_context: int = 0  # baseline: audio of frame t = mean over t-18 .. t+18
    # the authors' network (defaults) vs abawtools 0.1.0's (LEGACY): see the module docstring
    cross_ffn: bool = True  # cross-attention blocks end with a feed-forward sublayer
    gate: str = "frame"  # "frame": one gate value per frame (Linear 2d -> 1); "channel": per channel
    zero_faceless: bool = True  # fused visual stream set to 0 at frames without a face
    activation: str = "relu"  # of the self-attention layers' feed-forward (torch's default)
    # the ABAW track (abawtools.tasks): expr (8 logits), va (2 values, bounded by tanh), au (12 logits);
    # num_classes is its output count. Written to a file only when not expr, so an EXPR model's
    # config (and a training checkpoint's fingerprint) is what 0.2.0 wrote.
    task: str = "expr"

    # what a model file written before these fields existed was built with
    LEGACY = {"cross_ffn": False, "gate": "channel", "zero_faceless": False, "activation": "gelu"}

    def to_json(self):
        data = asdict(self)
        if data["task"] == "expr":
            del data["task"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        data = {**cls.LEGACY, **data}  # a field the file lacks: the architecture it was written with
        return cls(**{k: v for k, v in data.items() if k in known})


def bounded(out, cfg):
    """The head's outputs through the track's activation (tasks: VA's, and the multi-task VA
    columns, end in tanh, as the VA track's leading teams' heads do; logits stay logits)."""
    from abawtools import tasks

    return tasks.TASKS[cfg.task].activate(out)


def sinusoidal_positions(length, dim, device=None):
    """The fixed sine/cosine encoding of Vaswani et al. (Eq. 1's PE), shape (length, dim)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


def modality_dropout(visual_mask, p):
    """§3.4: with probability p a training window loses its whole visual stream (v_mask = 0), as
    when the subject turns away, so the network learns to fall back on audio."""
    if p <= 0:
        return visual_mask
    drop = torch.rand(visual_mask.shape[0], device=visual_mask.device) < p
    return visual_mask & ~drop[:, None]


class SafeAttention(nn.Module):
    """Multi-head attention whose keys can be masked out, all of them included (§3.4)."""

    def __init__(self, d_model, heads, dropout):
        super().__init__()
        if heads < 1 or d_model % heads:  # a ValueError: load_model names the file whose config says so
            raise ValueError(f"d_model {d_model} must be divisible by the number of heads {heads}")
        self.heads = heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, query, context, key_mask):
        B, L, D = query.shape
        S = context.shape[1]
        # Safe attention: if a window has no key at all (no face in any frame), a softmax over
        # nothing is 0/0 = NaN. Unmask the first key so the forward pass stays finite, then zero
        # this block's output for that window: the residual around it reduces to LayerNorm(query),
        # so the other modality's stream passes through intact instead of turning into NaN.
        empty = ~key_mask.any(dim=1)
        key_mask = key_mask.clone()
        key_mask[:, 0] |= empty

        h = self.heads
        q = self.q(query).view(B, L, h, D // h).transpose(1, 2)
        k, v = self.kv(context).view(B, S, 2, h, D // h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )
        y = self.out(y.transpose(1, 2).reshape(B, L, D))
        return y.masked_fill(empty[:, None, None], 0.0)


def feed_forward(cfg, activation="gelu"):
    d = cfg.d_model
    act = nn.ReLU() if activation == "relu" else nn.GELU()
    return nn.Sequential(nn.Linear(d, cfg.ffn_mult * d), act, nn.Dropout(cfg.dropout), nn.Linear(cfg.ffn_mult * d, d))


class EncoderLayer(nn.Module):
    """Post-norm transformer layer, torch's TransformerEncoderLayer in arithmetic (ReLU by default):
    x = LayerNorm(x + Dropout(Attn(x))); x = LayerNorm(x + Dropout(FFN(x)))."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        self.attn = SafeAttention(d, cfg.heads, cfg.dropout)
        self.ffn = feed_forward(cfg, cfg.activation)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask):
        x = self.norm1(x + self.drop(self.attn(x, x, mask)))
        return self.norm2(x + self.drop(self.ffn(x)))


class CrossBlock(nn.Module):
    """H_{q->k} = LayerNorm(Q + Dropout(CrossAttn(Q, K=V=context))) (Eq. 2-3), then (the authors'
    block, cfg.cross_ffn) LayerNorm(H + Dropout(FFN(H))) with a GELU feed-forward."""

    def __init__(self, cfg):
        super().__init__()
        self.attn = SafeAttention(cfg.d_model, cfg.heads, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.cross_ffn:
            self.ffn = feed_forward(cfg, "gelu")
            self.norm2 = nn.LayerNorm(cfg.d_model)

    def forward(self, query, context, context_mask):
        h = self.norm(query + self.drop(self.attn(query, context, context_mask)))
        if hasattr(self, "ffn"):
            h = self.norm2(h + self.drop(self.ffn(h)))
        return h


class Gate(nn.Module):
    """F = G * H + (1 - G) * H_cross with G = sigmoid(W [H; H_cross] + b) (Eq. 4); G has one value
    per frame (the authors', Linear 2d -> 1) or one per channel (abawtools 0.1.0)."""

    def __init__(self, d, per_frame=True):
        super().__init__()
        self.proj = nn.Linear(2 * d, 1 if per_frame else d)

    def forward(self, own, cross):
        g = torch.sigmoid(self.proj(torch.cat([own, cross], dim=-1)))
        return g * own + (1 - g) * cross


class FeatureNorm(nn.Module):
    """Standardise features with training-set statistics, zero at masked frames (v_mask = 0)."""

    def __init__(self, dim):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x, mask):
        x = (x.float() - self.mean) / self.std
        # torch.where, not x * mask: a NaN left at a masked frame must not leak through as 0 * NaN
        return torch.where(mask[..., None], x, torch.zeros((), device=x.device))


class DualBranchNet(nn.Module):
    """Visual and audio transformer branches, cross-attention both ways, gated fusion, MLP head."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.v_norm, self.a_norm = FeatureNorm(cfg.visual_dim), FeatureNorm(cfg.audio_dim)
        self.v_proj, self.a_proj = nn.Linear(cfg.visual_dim, d), nn.Linear(cfg.audio_dim, d)
        self.v_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.a_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.v_to_a, self.a_to_v = CrossBlock(cfg), CrossBlock(cfg)
        if cfg.gate not in ("frame", "channel"):
            raise ValueError(f"unknown gate {cfg.gate!r} (frame or channel)")
        self.v_gate, self.a_gate = Gate(d, cfg.gate == "frame"), Gate(d, cfg.gate == "frame")
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, cfg.num_classes))

    def forward(self, visual, audio, visual_mask, audio_mask):
        if self.training:
            visual_mask = modality_dropout(visual_mask, self.cfg.modality_dropout)
        W = visual.shape[1]
        pe = sinusoidal_positions(W, self.cfg.d_model, visual.device)
        hv = self.v_proj(self.v_norm(visual, visual_mask)) + pe
        ha = self.a_proj(self.a_norm(audio, audio_mask)) + pe
        for layer in self.v_layers:
            hv = layer(hv, visual_mask)
        for layer in self.a_layers:
            ha = layer(ha, audio_mask)
        h_va = self.v_to_a(hv, ha, audio_mask)  # visual queries audio
        h_av = self.a_to_v(ha, hv, visual_mask)  # audio queries visual: safe when no face at all
        fv, fa = self.v_gate(hv, h_va), self.a_gate(ha, h_av)
        if self.cfg.zero_faceless:
            # a frame without a face is classified from the audio stream alone (authors' final_v * v_mask)
            fv = torch.where(visual_mask[..., None], fv, torch.zeros((), device=fv.device, dtype=fv.dtype))
        return bounded(self.head(torch.cat([fv, fa], dim=-1)), self.cfg)


class TwoStreamBaseline(nn.Module):
    """Frame-level MLPs on each modality with decision fusion (§4.3, Eq. 6).

    The audio input of frame t is the mean of the present audio rows t-c .. t+c (c = 18): the
    windows fed to this model carry c extra audio rows on each side for that.
    A frame with no face uses the audio decision alone; one with no audio, the visual one.
    """

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.v_norm, self.a_norm = FeatureNorm(cfg.visual_dim), FeatureNorm(cfg.audio_dim)

        def mlp(dim):
            return nn.Sequential(nn.Linear(dim, d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, cfg.num_classes))

        self.v_mlp, self.a_mlp = mlp(cfg.visual_dim), mlp(cfg.audio_dim)

    def pooled_audio(self, audio, audio_mask):
        c = self.cfg.audio_context
        x = self.a_norm(audio, audio_mask)  # (B, W + 2c, Da), zero where missing
        if c == 0:
            return x, audio_mask
        k = 2 * c + 1
        m = audio_mask.float()[..., None]
        sums = F.avg_pool1d(x.transpose(1, 2), k, stride=1).transpose(1, 2) * k
        counts = F.avg_pool1d(m.transpose(1, 2), k, stride=1).transpose(1, 2) * k
        present = counts[..., 0] > 0.5
        return sums / counts.clamp(min=1.0), present

    def forward(self, visual, audio, visual_mask, audio_mask):
        if self.training:
            visual_mask = modality_dropout(visual_mask, self.cfg.modality_dropout)
        a, a_present = self.pooled_audio(audio, audio_mask)
        v_out = self.v_mlp(self.v_norm(visual, visual_mask))
        a_out = self.a_mlp(a)
        lam = torch.full(visual_mask.shape, self.cfg.fusion_lambda, device=visual.device)
        lam = torch.where(visual_mask, lam, torch.zeros_like(lam))
        lam = torch.where(~a_present & visual_mask, torch.ones_like(lam), lam)
        return bounded(lam[..., None] * v_out + (1 - lam[..., None]) * a_out, self.cfg)


def build_model(cfg):
    if cfg.arch == "dual":
        return DualBranchNet(cfg)
    if cfg.arch == "baseline":
        return TwoStreamBaseline(cfg)
    raise ValueError(f"unknown architecture {cfg.arch!r} (dual or baseline)")


# ------------------------------------------------------------------------- model files
def save_model(path, model, extra=None):
    """One .safetensors file: the weights, and in its metadata the JSON config and anything else."""
    from safetensors.torch import save

    from abawtools import CLASSES
    from abawtools.formats import atomic_output

    metadata = {"abaw.config": model.cfg.to_json(), "abaw.classes": json.dumps(list(CLASSES)), "format": "pt"}
    for key, value in (extra or {}).items():
        metadata[f"abaw.{key}"] = json.dumps(value, sort_keys=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(path, "wb") as fh:
        fh.write(save(state, metadata=metadata))


def load_model(path, device="cpu"):
    """Read a model written by `save_model` (safetensors only: no pickle is ever loaded)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from abawtools.errors import AbawError

    try:
        with safe_open(path, framework="pt") as fh:
            metadata = fh.metadata() or {}
        state = load_file(path, device=str(device))
    except FileNotFoundError:
        raise AbawError(f"{path}: no such model file") from None
    except Exception as exc:
        raise AbawError(f"{path}: not a safetensors model file ({exc})") from None
    if "abaw.config" not in metadata:
        raise AbawError(f"{path}: no abaw config in the safetensors metadata (not written by abaw train?)")
    try:
        cfg = ModelConfig.from_json(metadata["abaw.config"])
        model = build_model(cfg)
    except (ValueError, TypeError) as exc:
        raise AbawError(f"{path}: unreadable model config ({str(exc).splitlines()[0]})") from None
    from abawtools import tasks

    task = tasks.TASKS.get(cfg.task)
    if task is None or cfg.num_classes != task.outputs:
        raise AbawError(f"{path}: the model has {cfg.num_classes} classes (outputs) for task {cfg.task!r}; ABAW's "
                        "tracks have expr 8, va 2, au 12")
    bad = [k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise AbawError(f"{path}: NaN or Inf in the weights ({', '.join(bad[:3])}): the training diverged")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise AbawError(f"{path}: weights do not fit the stored config ({str(exc).splitlines()[0]})") from None
    info = {k[len("abaw."):]: json.loads(v) for k, v in metadata.items() if k.startswith("abaw.") and k != "abaw.config"}
    return model.to(device).eval(), info

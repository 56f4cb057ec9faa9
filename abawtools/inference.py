"""Frame-level logits for a whole video: every window through the model in batches, soft voting."""

import numpy as np
import torch

from abawtools import data, windows
from abawtools.runtime import autocast


def to_tensors(batch, device):
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict_video(model, video, window=None, stride=None, batch_size=64, device=None, autocast_dtype=None,
                  progress=None):
    """Logits (T, C) for `video` (a data.Video): each frame's mean over all windows covering it."""
    cfg = model.cfg
    window = window or cfg.window
    stride = stride or cfg.stride
    device = device or next(model.parameters()).device
    T = video.frames
    sums = torch.zeros(T + window, cfg.num_classes, dtype=torch.float64, device=device)
    counts = torch.zeros(T + window, dtype=torch.float64, device=device)
    starts = windows.window_starts(T, window, stride)
    offsets = torch.arange(window, device=device)
    was_training = model.training
    model.eval()
    for lo in range(0, len(starts), batch_size):
        chunk = starts[lo : lo + batch_size]
        batch = to_tensors(data.cut_batch([(video, int(s)) for s in chunk], window, cfg.audio_context), device)
        with autocast(device, autocast_dtype):
            logits = model(batch["visual"], batch["audio"], batch["visual_mask"], batch["audio_mask"])
        rows = (torch.as_tensor(chunk, device=device)[:, None] + offsets).reshape(-1)
        sums.index_add_(0, rows, logits.reshape(-1, cfg.num_classes).double())
        counts.index_add_(0, rows, torch.ones_like(rows, dtype=torch.float64))
        if progress:
            progress(len(chunk))
    model.train(was_training)
    out = (sums[:T] / counts[:T, None].clamp(min=1)).float().cpu().numpy()
    return out


def predict_ensemble(models, weights, video, window=None, stride=None, batch_size=64, device=None,
                     autocast_dtype=None, progress=None):
    """The weighted mean of each model's soft-voted logits (T, C): sum w_i L_i / sum w_i (the
    authors' final.py averages three models this way). One model: its own logits, unchanged."""
    if len(models) == 1:
        return predict_video(models[0], video, window, stride, batch_size, device, autocast_dtype, progress)
    # normalised before they multiply: finite weights whose sum overflows (1e308 + 1e308) gave NaN
    w = np.asarray(weights, np.float64)
    w = w / w.max()
    w = w / w.sum()
    total = np.zeros((video.frames, models[0].cfg.num_classes), np.float64)
    for model, wi in zip(models, w):
        if wi > 0:
            total += wi * predict_video(model, video, window, stride, batch_size, device, autocast_dtype, progress)
    return total.astype(np.float32)


def predict_window_by_window(model, video, window=None, stride=None):
    """The reference-implementation way, one forward per window (for tests and the benchmark)."""
    cfg = model.cfg
    window = window or cfg.window
    stride = stride or cfg.stride
    starts = windows.window_starts(video.frames, window, stride)
    outs = []
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for s in starts:
            b = to_tensors(data.cut_batch([(video, int(s))], window, cfg.audio_context), device)
            outs.append(model(b["visual"], b["audio"], b["visual_mask"], b["audio_mask"])[0].cpu().numpy())
    return windows.soft_vote(np.stack(outs), starts, video.frames)

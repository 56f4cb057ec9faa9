"""Focal loss (paper Eq. 5) and class weights from the effective number of samples (Cui et al. 2019)."""

import numpy as np
import torch
import torch.nn.functional as F


def focal_loss(logits, target, gamma=2.0, weight=None, ignore_index=-1):
    """Eq. 5: sum over valid frames of -w_y (1 - p_t)^gamma log p_t, divided by the valid count.

    p_t is the softmax probability of the true class, computed from the logits alone; the class
    weight multiplies each frame's term afterwards. (Feeding a class-weighted cross-entropy into
    exp(-CE) to get p_t, as one public implementation does, makes p_t depend on the weights and is
    not the focal loss.) A batch without any valid frame gives 0 with a gradient, never NaN.
    """
    logits = logits.reshape(-1, logits.shape[-1]).float()
    target = target.reshape(-1)
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    log_pt = F.log_softmax(logits, dim=-1).gather(1, safe_target[:, None])[:, 0]
    pt = log_pt.exp()
    term = -((1.0 - pt).clamp(min=0) ** gamma) * log_pt
    if weight is not None:
        term = term * weight.to(term)[safe_target]
    term = torch.where(valid, term, torch.zeros_like(term))
    return term.sum() / valid.sum().clamp(min=1)


def effective_number_weights(counts, beta=0.9999):
    """w_c = (1 - beta) / (1 - beta^n_c), normalised to mean 1 over the classes that occur.

    A class with no sample gets weight 0 (it can never be a target).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if not 0 <= beta < 1:
        raise ValueError("beta must be in [0, 1)")
    present = counts > 0
    return _mean_one(1.0 / ((1.0 - np.power(beta, counts[present])) / (1.0 - beta)), present)


def inverse_sqrt_weights(counts):
    """w_c = 1 / sqrt(n_c), normalised to mean 1 over the classes that occur (the authors'
    fine-tuning weights); a class with no sample gets weight 0."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    return _mean_one(1.0 / np.sqrt(counts[present]), present)


def _mean_one(raw, present):
    """Per-class weights: `raw` for the present classes scaled to mean 1, 0 elsewhere."""
    weights = np.zeros(len(present))
    if present.any():
        weights[present] = raw * (present.sum() / raw.sum())
    return weights


# ------------------------------------------------------------------------ VA and AU
def ccc_loss(pred, target):
    """1 - CCC, the mean over valence and arousal, over the batch's annotated frames (target in
    [-1, 1]; the organisers' -5 and window padding are left out): the loss the VA track's leading
    teams train with, the challenge's own metric made differentiable. 0 with a gradient when no
    frame is annotated, never NaN."""
    pred = pred.reshape(-1, pred.shape[-1]).float()
    target = target.reshape(-1, target.shape[-1]).float()
    valid = ((target >= -1) & (target <= 1)).all(dim=1)
    if not bool(valid.any()):
        return pred.sum() * 0.0
    p, t = pred[valid], target[valid]
    pm, tm = p.mean(0), t.mean(0)
    cov = ((p - pm) * (t - tm)).mean(0)
    ccc = 2 * cov / (p.var(0, unbiased=False) + t.var(0, unbiased=False) + (pm - tm) ** 2 + 1e-8)
    return (1 - ccc).mean()


def au_loss(logits, target, pos_weight=None):
    """Binary cross-entropy of each AU's logit, averaged over the 12 AUs and over the frames
    whose 12 labels are valid (-1 marks an invalid frame, and the window padding); `pos_weight`
    (12,) scales the positive term of each AU (au_pos_weights). 0 with a gradient when no frame
    is valid."""
    C = logits.shape[-1]
    logits = logits.reshape(-1, C).float()
    target = target.reshape(-1, C)
    valid = (target >= 0).all(dim=1)
    term = F.binary_cross_entropy_with_logits(logits, target.clamp(min=0).float(),
                                              pos_weight=None if pos_weight is None else pos_weight.to(logits),
                                              reduction="none").mean(dim=1)
    term = torch.where(valid, term, torch.zeros_like(term))
    return term.sum() / valid.sum().clamp(min=1)


def au_pos_weights(positives, frames, cap=10.0):
    """Per-AU weight of the positive term: negatives / positives over the training frames, capped
    at `cap` (a rare AU must not swamp the loss) and at least 1; an AU never positive gets 1."""
    positives = np.asarray(positives, np.float64)
    negatives = np.asarray(frames, np.float64) - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(positives > 0, negatives / positives, 1.0)
    return np.clip(w, 1.0, cap)


def weights_on(weights, device):
    """A track's loss weights (numpy, a dict of them for the multi-task heads, or None) as float32
    tensors on `device`."""
    if weights is None:
        return None
    if isinstance(weights, dict):
        return {k: v if k == "tasks" else weights_on(v, device) for k, v in weights.items()}
    return torch.tensor(weights, dtype=torch.float32, device=device)


def weights_listed(weights):
    """weights_on's tensors as lists (for a model's JSON summary)."""
    if weights is None:
        return None
    if isinstance(weights, dict):
        return {k: v if k == "tasks" else weights_listed(v) for k, v in weights.items()}
    return weights.cpu().tolist()

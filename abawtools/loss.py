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

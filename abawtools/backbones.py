"""Hugging Face vision backbones: loading one (hub id or folder, never remote code) and the
pooled feature extract-visual writes and finetune trains its head on."""

from abawtools.errors import AbawError
from abawtools.hf import load_pretrained


def load_backbone(name, device="cpu", dtype=None):
    """A Hugging Face vision backbone for extraction or fine-tuning, deterministic.

    Training-time randomness in the forward pass is switched off: ViT-MAE shuffles and drops 75 %
    of the patches on *every* forward, eval mode or not (its mask_ratio), so it is set to 0 and
    `pooled_features` passes an identity order; drop-path / stochastic depth is off in eval mode
    and set to 0 for fine-tuning, so what is trained is what is extracted.
    """
    overrides = {}
    config = _load_config(name)
    if hasattr(config, "mask_ratio"):
        overrides["mask_ratio"] = 0.0
    for key in ("drop_path_rate", "drop_connect_rate"):
        if hasattr(config, key):
            overrides[key] = 0.0
    return load_pretrained(name, "vision", device, dtype, **overrides)


def patch_size(config):
    """The side of a transformer backbone's patch (the largest, if it has several), 0 for a CNN:
    the least input side it accepts."""
    patch = getattr(config, "patch_size", 0) or 0
    return int(max(patch)) if isinstance(patch, (list, tuple)) else int(patch)


def _load_config(name):
    from transformers import AutoConfig

    from abawtools.hf import check_name, hub_kwargs, quiet_transformers

    quiet_transformers()
    check_name(name, "vision")
    kwargs = hub_kwargs(name, "vision")
    try:
        return AutoConfig.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as exc:
        raise AbawError(f"cannot load vision model {name!r}: {str(exc).splitlines()[0]}") from None


def pooled_features(model, pixel_values):
    """The feature of the paper (§4.2): the backbone's pooled output, else the mean of its final
    hidden states over tokens (or over space, for CNNs). Extraction and fine-tuning both use it."""
    import torch

    kwargs = {}
    if getattr(model.config, "mask_ratio", None) is not None:
        # ViT-MAE: patches in their own order, all kept (mask_ratio 0): no random shuffle
        n = (model.config.image_size // model.config.patch_size) ** 2
        kwargs["noise"] = torch.arange(n, device=pixel_values.device, dtype=torch.float32).expand(len(pixel_values), n)
    out = model(pixel_values=pixel_values, **kwargs)
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        hidden = out.last_hidden_state
        pooled = hidden.mean(dim=1) if hidden.dim() == 3 else hidden.mean(dim=(2, 3))
    return pooled.reshape(len(pixel_values), -1)

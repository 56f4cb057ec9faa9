"""Device and precision helpers, one place for training, fine-tuning, inference and extraction."""

import contextlib

import torch


def pick_device(name="auto"):
    """'auto' -> the first GPU if there is one, else the CPU; anything else as torch spells it,
    checked here, so a job on the wrong node fails in its first second with one line."""
    from abawtools.errors import AbawError

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        import click

        raise click.BadParameter(f"{name!r} is not a device (auto, cpu, cuda, cuda:1, ...)",
                                 param_hint="--device") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AbawError(f"--device {name}: no CUDA GPU is usable here (torch {torch.__version__}); "
                            "--device auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AbawError(f"--device {name}: this node has {torch.cuda.device_count()} GPU(s)")
    return device


def torch_dtype(name):
    """'fp32' | 'fp16' | 'bf16' -> None (keep fp32) or the torch dtype."""
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def autocast_dtype(device, name):
    """--dtype for training and inference: 'auto' = bf16 autocast on CUDA, fp32 elsewhere (CPU
    bf16 is slow); 'bf16' = bf16 autocast on any device (also the CPU: how the tests run it);
    'fp32' = none."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16}[name]


def autocast(device, dtype):
    """torch.autocast on `device` in `dtype`, or nothing when dtype is None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def finite_output(values, source, unit, dtype=None):
    """A backbone's outputs (N, D), a tensor (checked where it is: no copy off the GPU) or an
    array: NaN or Inf there is an overflow (fp16's range is +-65504, which large models'
    activations exceed) or broken weights. Passed on, it would read downstream as "no face" /
    "no audio" and vanish from the results without a word."""
    import numpy as np

    from abawtools.errors import AbawError

    bad = ~(torch.isfinite(values) if torch.is_tensor(values) else np.isfinite(values)).all(-1)
    if bad.any():
        hint = ("fp16 overflows: use --dtype bf16 or fp32" if dtype == torch.float16
                else "are the model's weights finite?")
        raise AbawError(f"{source}: the model gave NaN or Inf for {int(bad.sum())} of {len(bad)} {unit}; {hint}")
    return values

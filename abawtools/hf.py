"""Hugging Face helpers shared by the visual and audio front ends."""

import json
import os


def quiet_transformers():
    """Keep transformers' progress bars and notices off stderr: it is ours (progress, errors)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def preprocessor_config(name):
    """preprocessor_config.json of a local folder or a hub id (from the local cache), or {}."""
    path = os.path.join(name, "preprocessor_config.json")
    if not os.path.isdir(name):
        try:
            from transformers.utils import cached_file

            path = cached_file(name, "preprocessor_config.json")
        except Exception:
            path = None
    if path and os.path.exists(path):
        try:
            with open(path, encoding="utf-8-sig") as fh:
                config = json.load(fh)
        except (OSError, ValueError) as exc:
            from abawtools.errors import AbawError

            raise AbawError(f"{path}: unreadable preprocessor config ({exc}); without it the model's input size "
                            "and normalisation are unknown: repair or restore the file") from None
        if not isinstance(config, dict):
            from abawtools.errors import AbawError

            raise AbawError(f"{path}: unreadable preprocessor config (not a JSON object)")
        return config
    return {}


def check_name(name, what):
    """A missing local folder is an error at once (not a minute of hub retries): anything that is
    not an existing path must look like a hub id, `org/name`."""
    from abawtools.errors import AbawError

    if os.path.exists(name):
        if os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json")):
            raise AbawError(f"cannot load {what} model {name!r}: the folder has no config.json")
        return
    if name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") != 1:
        raise AbawError(f"cannot load {what} model {name!r}: no such folder (a hub id looks like org/name)")


def load_pretrained(name, what, device, dtype, **config_overrides):
    """AutoModel.from_pretrained on a local folder or a hub id (never trust_remote_code), on
    `device` in `dtype`, in eval mode; a clear one-line error when it cannot be loaded.
    `config_overrides` replace config fields (e.g. mask_ratio=0.0)."""
    from transformers import AutoModel

    from abawtools.errors import AbawError

    quiet_transformers()
    check_name(name, what)
    try:
        model = AutoModel.from_pretrained(name, **config_overrides)
    except (OSError, ValueError) as exc:
        raise AbawError(f"cannot load {what} model {name!r}: {str(exc).splitlines()[0]}") from None
    return model.to(device, dtype=dtype).eval()

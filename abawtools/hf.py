"""Hugging Face helpers shared by the visual and audio front ends."""

import json
import os


def quiet_transformers():
    """Keep transformers' progress bars and notices off stderr: it is ours (progress, errors)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


_REACHABLE = {}


def hub_reachable(timeout=2.0):
    """Whether the Hugging Face hub (HF_ENDPOINT) answers a TCP connection within `timeout`
    seconds; False under HF_HUB_OFFLINE. Asked once per process."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if endpoint not in _REACHABLE:
        import socket
        from urllib.parse import urlparse

        url = urlparse(endpoint)
        try:
            socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                     timeout).close()
            _REACHABLE[endpoint] = True
        except (OSError, ValueError):
            _REACHABLE[endpoint] = False
    return _REACHABLE[endpoint]


def hub_kwargs(name, what="the"):
    """from_pretrained's keywords for `name`: none for a local folder; for a hub id with the hub
    out of reach, the local cache alone (no half a minute of retries), and an error at once when
    the model is not cached either."""
    if os.path.exists(name) or hub_reachable():
        return {}
    from huggingface_hub import try_to_load_from_cache

    from abawtools.errors import AbawError

    if not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise AbawError(f"cannot load {what} model {name!r}: it is not in the local Hugging Face cache and the hub "
                        "cannot be reached; give a local folder, or download it where there is a network "
                        f"(huggingface-cli download {name}) and copy the cache")
    return {"local_files_only": True}


def preprocessor_config(name):
    """preprocessor_config.json of a local folder or a hub id (from the local cache), or {}."""
    path = os.path.join(name, "preprocessor_config.json")
    if not os.path.isdir(name):
        try:
            from transformers.utils import cached_file

            path = cached_file(name, "preprocessor_config.json", **hub_kwargs(name))
        except Exception:
            path = None
    if path and os.path.exists(path):
        try:
            from abawtools.formats import open_text

            with open_text(path) as fh:
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
    kwargs = hub_kwargs(name, what)
    try:
        model = AutoModel.from_pretrained(name, **kwargs, **config_overrides)
    except (OSError, ValueError) as exc:
        raise AbawError(f"cannot load {what} model {name!r}: {str(exc).splitlines()[0]}") from None
    wanted = {"vision": "pixel_values", "speech": "input_values"}.get(what)
    given = getattr(model, "main_input_name", None)
    if wanted and given and given != wanted:
        raise AbawError(f"{name!r} is a {model.config.model_type} model (its input is {given}), not a {what} model: "
                        + ("give a vision backbone (BEiT, ViT, DINOv2, ResNet, ConvNeXt, ...)" if what == "vision"
                           else "give a speech model (WavLM, HuBERT, wav2vec2)"))
    return model.to(device, dtype=dtype).eval()

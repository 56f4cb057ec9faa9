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
        with open(path) as fh:
            return json.load(fh)
    return {}

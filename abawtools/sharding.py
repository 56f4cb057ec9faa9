"""Split per-video work across SLURM array tasks, balanced by frame count, not by file count."""

import os
import re


def parse_shard(text):
    """'I/N' -> (I, N) with 0 <= I < N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ValueError(f"--shard takes I/N (e.g. 0/4), got {text!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return index, count


def shard_from_env(environ=None):
    """(I, N) from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, offset by SLURM_ARRAY_TASK_MIN."""
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    values = {}
    for name, default in (("SLURM_ARRAY_TASK_ID", None), ("SLURM_ARRAY_TASK_COUNT", None), ("SLURM_ARRAY_TASK_MIN", "0")):
        text = env.get(name, default)
        if not re.fullmatch(r"\s*\d+\s*", text or ""):
            raise ValueError(f"{name}={text!r} is not a whole number")
        values[name] = int(text)
    task, count = values["SLURM_ARRAY_TASK_ID"] - values["SLURM_ARRAY_TASK_MIN"], values["SLURM_ARRAY_TASK_COUNT"]
    if count < 1 or not 0 <= task < count:
        # a sparse or offset array (--array=0,5 or a step): a task past the count would do nothing
        raise ValueError(f"SLURM_ARRAY_TASK_ID={values['SLURM_ARRAY_TASK_ID']} (minus SLURM_ARRAY_TASK_MIN="
                         f"{values['SLURM_ARRAY_TASK_MIN']}) is not below SLURM_ARRAY_TASK_COUNT={count}: use a "
                         f"contiguous --array=0-{count - 1}, or pass --shard I/N")
    return task, count


def assign_shards(sizes, count):
    """Greedy longest-first assignment of items to `count` shards; returns the shard of each item.

    Deterministic (ties go to the lower shard and the earlier item), so every array task computes
    the same split on its own, with no coordination.
    """
    loads = [0] * count
    shard_of = [0] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        s = min(range(count), key=lambda j: (loads[j], j))
        shard_of[i] = s
        loads[s] += max(int(sizes[i]), 1)
    return shard_of


def select(items, sizes, shard):
    """The items of shard (I, N); `shard=None` keeps everything."""
    if shard is None or shard[1] == 1:
        return list(items)
    index, count = shard
    return [item for item, s in zip(items, assign_shards(sizes, count)) if s == index]

"""What `abaw train` hands the training loop (engine.fit): windows cut on the fly from feature
files, focal loss with effective-number weights, and per-epoch validation through the inference
path (exactly infer | smooth | score).
"""

import hashlib
from dataclasses import dataclass

import torch

from abawtools import data, engine, inference, loss, tasks, windows
from abawtools.errors import AbawError, few
from abawtools.model import build_model


@dataclass
class TrainOptions:
    # Where the paper gives no value, the authors' train.py (Hathaway1027/abaw26-expr,
    # abaw_model/dual_window_att_model/train.py) does: 30 epochs, batch 32 x 2 accumulated,
    # lr 2.4e-5, weight decay 0.03, cosine with 10 % warmup, bf16.
    epochs: int = 30
    batch_size: int = 32  # global micro-batch, in windows
    lr: float = 2.4e-5
    weight_decay: float = 0.03
    warmup: float = 0.1  # fraction of all steps
    gamma: float = 2.0
    beta: float = 0.9999
    class_weights: bool = True
    seed: int = 0
    smooth_k: int = 11  # validation goes through the same smoothing as `abaw smooth`
    device: str = "auto"
    dtype: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    accumulate: int = 2  # micro-batches per optimizer step
    patience: int = 0  # early stopping after this many epochs without a better val F1 (0: never)
    checkpoint_every: int = 0  # steps; 0: at the end of every epoch only
    # multi-task: the weights of the VA, EXPR and AU losses in their sum (equal: the plain sum of
    # the organisers' multi-task baseline; see docs/multitask.md)
    task_weights: tuple = (1.0, 1.0, 1.0)


# ---------------------------------------------------------------------------- data set
class WindowSet:
    """The windows of a manifest as (video, start) references; videos opened once, lazily read."""

    def __init__(self, rows, window):
        self.window = window
        self.videos = data.open_videos(rows)
        self.items = []
        for row in rows:
            if row["stop"] - row["start"] != window:
                raise AbawError(f"manifest window {row['video']}@{row['start']} is {row['stop'] - row['start']} "
                                f"frames; the model's window is {window} (use the same -W in window and train)")
            self.items.append((self.videos[row["visual"], row["audio"], row["labels"]], row["start"]))
        dims = {}
        for v in self.videos.values():
            dims.setdefault(v.dims, v.vid)
        if len(dims) != 1:
            raise AbawError("feature dimensions (visual, audio) differ between videos: "
                            + ", ".join(f"{vid} {d}" for d, vid in dims.items()))
        self.dims = next(iter(dims))

        self.task = tasks.one_task({v.labels_path: v.task for v in self.videos.values()}, "the training manifest")
        if self.task.annotated(self.labelled()) == 0:  # a loss of 0 over nothing, and a model written from it
            raise AbawError(f"the training manifest: no window holds an annotated frame (every frame of its "
                            f"{len(self.videos)} video(s) is labelled {self.task.invalid:g}): nothing to train on")

    def _by_video(self):
        by_video = {}
        for video, start in self.items:
            by_video.setdefault(id(video), (video, []))[1].append(start)
        return by_video.values()

    def labelled(self):
        """[(labels, cover)] per training video: how often the loss sees each frame (the track's
        class or positive weights are computed from it, task.train_weights)."""
        return [(video.labels, windows.coverage(len(video.labels), starts, self.window))
                for video, starts in self._by_video()]


def _rows_fingerprint(rows):
    """Windows (video, start) and the files behind them: new features or labels never resume an old run."""
    h = hashlib.sha256()
    for row in rows:
        h.update(f"{row['video']}|{row['start']}".encode())
    from abawtools import annotations, formats

    files = dict.fromkeys(f for row in rows for f in (*formats.feature_files(row["visual"]),
                                                      *(formats.feature_files(row["audio"]) if row["audio"] else ()),
                                                      *annotations.ref_files(row["labels"])) if f)
    h.update(engine.file_signature(files).encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------ train
def validate(model, videos, k, device, autocast_dtype=None, task=None):
    """The challenge's score of soft-voted, smoothed predictions: exactly infer | smooth | score
    (EXPR: pooled macro F1, median k; VA: mean CCC; AU: mean F1; the track's default
    filter for VA and AU, k when given)."""
    task = task or tasks.EXPR
    pairs = []
    for video in videos:
        outputs = inference.predict_video(model, video, device=device, autocast_dtype=autocast_dtype)
        pairs.append((video.vid, task.smooth(outputs, k)[0], video.labels))
    return task.score(pairs)


class WindowJob(engine.Job):
    """The dual-branch network (or the baseline) on windows cut on the fly from feature files."""

    unit = "windows"

    def __init__(self, train_rows, cfg, opts, val_rows=None):
        self.rows, self.cfg, self.opts, self.val_rows = train_rows, cfg, opts, val_rows
        self.counts = self.weights = None

    def build(self, device, rank, world, log):
        cfg, opts = self.cfg, self.opts
        self.trainset = trainset = WindowSet(self.rows, cfg.window)
        cfg.visual_dim, cfg.audio_dim = trainset.dims
        self.task = task = trainset.task
        cfg.task, cfg.num_classes = task.name, task.outputs  # the task follows from the label files
        self.val_videos = []
        if self.val_rows:
            self.val_videos = list(data.open_videos(self.val_rows).values())
            named = {v.labels_path: v.task for v in self.val_videos}
            named[next(iter(trainset.videos.values())).labels_path] = task
            tasks.one_task(named, "training and validation (--val)")
            if {v.dims for v in self.val_videos} != {trainset.dims}:
                raise AbawError("validation features have other dimensions than the training features")
            if not any(task.valid(v.labels).any() for v in self.val_videos):
                raise AbawError(f"--val: every frame of the validation videos is labelled {task.invalid:g}, "
                                "nothing to score")
            shared = sorted({r["video"] for r in self.rows} & {r["video"] for r in self.val_rows})
            if shared and rank == 0:
                log(f"warning: {len(shared)} validation video(s) are training videos too ({few(shared)}): the "
                    "validation score is not held out")
        model = build_model(cfg)
        self.counts, weights = task.train_weights(trainset.labelled(), opts)
        self.weights = loss.weights_on(weights, device)
        v_mean, v_std = data.feature_stats([v.visual for v in trainset.videos.values()])
        a_mean, a_std = data.feature_stats([v.audio for v in trainset.videos.values()])
        with torch.no_grad():
            model.v_norm.mean.copy_(torch.from_numpy(v_mean))
            model.v_norm.std.copy_(torch.from_numpy(v_std))
            model.a_norm.mean.copy_(torch.from_numpy(a_mean))
            model.a_norm.std.copy_(torch.from_numpy(a_std))
        if rank == 0:
            log(f"training {cfg.arch}: {len(trainset.items)} windows from {len(trainset.videos)} videos"
                + ("" if task is tasks.EXPR else f" ({task.title})"))
            line = task.describe_counts(self.counts)
            if line:
                log(line)
        return model

    def size(self):
        return len(self.trainset.items)

    def batches(self, index_lists, device):
        for idx in index_lists:
            items = [self.trainset.items[i] for i in idx]
            yield inference.to_tensors(data.cut_batch(items, self.cfg.window, self.cfg.audio_context), device)

    def loss(self, net, batch, key):
        out = net(batch["visual"], batch["audio"], batch["visual_mask"], batch["audio_mask"])
        mean, valid = self.task.loss(out, batch["labels"], self.weights, self.opts.gamma)
        return mean * max(valid, 1), valid

    def validate(self, model, device, autocast_dtype):
        if not self.val_videos:
            return None
        k = self.opts.smooth_k if self.task is tasks.EXPR else None  # -k is EXPR's; the others: their own filters
        return validate(model, self.val_videos, k, device, autocast_dtype, self.task)

    def fingerprint(self):
        parts = [self.cfg.to_json(), _rows_fingerprint(self.rows), _rows_fingerprint(self.val_rows or [])]
        return "|".join(parts)

    def summary(self):
        weights = loss.weights_listed(self.weights)
        if self.task is tasks.EXPR:  # as every EXPR model file has it
            return {"class_counts": self.counts.tolist(), "class_weights": weights}
        if self.task is tasks.AU:
            return {"task": "au", "au_positives": self.counts.tolist(), "au_pos_weights": weights}
        if self.task is tasks.VA:
            return {"task": "va"}
        return {"task": self.task.name, "counts": self.counts, "weights": weights}


def train(train_rows, cfg, opts, checkpoint_dir, val_rows=None, log=print, stop_after_steps=None,
          progress_every=30.0):
    """Train and return (model with the best weights, summary, rank). Raises Preempted after a checkpoint."""
    job = WindowJob(train_rows, cfg, opts, val_rows)
    return engine.fit(job, opts, checkpoint_dir, log, stop_after_steps, progress_every)

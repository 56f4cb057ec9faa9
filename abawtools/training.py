"""The training loop behind `abaw train`: windows cut on the fly, focal loss with effective-number
weights, AdamW with warmup + cosine decay, per-epoch validation through the inference path,
exact resume, and a checkpoint-and-exit on SIGTERM/SIGUSR1 (what SLURM sends before it stops a job).
Runs under torchrun as DistributedDataParallel (gloo on CPU, NCCL on GPU).
"""

import copy
import hashlib
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.distributed as dist

from abawtools import CLASSES, NUM_CLASSES, data, inference, loss, scoring, smoothing, windows
from abawtools.errors import AbawError
from abawtools.model import build_model

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: a checkpoint was written; run the same command again to continue
PREEMPTED_MARKER = "PREEMPTED"  # written into the checkpoint folder alongside that exit status


@dataclass
class TrainOptions:
    epochs: int = 20
    batch_size: int = 32  # global batch, in windows
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of all steps
    gamma: float = 2.0
    beta: float = 0.9999
    class_weights: bool = True
    seed: int = 0
    smooth_k: int = 11  # validation goes through the same smoothing as `abaw smooth`
    device: str = "auto"
    bf16: bool = True  # autocast on CUDA only


class Preempted(Exception):
    """Raised after a checkpoint was written because SLURM (or a user) asked the job to stop."""


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
        dims = {v.dims for v in self.videos.values()}
        if len(dims) != 1:
            raise AbawError(f"feature dimensions differ between videos: {sorted(dims)}")
        self.dims = dims.pop()

    def class_counts(self):
        """Valid labels of every training window, a frame counted once per window covering it."""
        counts = np.zeros(NUM_CLASSES, dtype=np.int64)
        by_video = {}
        for video, start in self.items:
            by_video.setdefault(id(video), (video, []))[1].append(start)
        for video, starts in by_video.values():
            counts += windows.label_counts(video.labels, np.array(starts), self.window, NUM_CLASSES)
        return counts


def _fingerprint(rows, cfg, opts):
    h = hashlib.sha256()
    h.update(cfg.to_json().encode())
    keep = {k: v for k, v in asdict(opts).items() if k not in ("device",)}
    h.update(json.dumps(keep, sort_keys=True).encode())
    for row in rows:
        h.update(f"{row['video']}|{row['start']}".encode())
    return h.hexdigest()[:16]


def lr_factor(step, total, warmup_steps):
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


# ------------------------------------------------------------------------ distributed
def _dist_setup(opts):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and opts.device in ("auto", "cuda")
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if world > 1 and torch.cuda.is_available() and opts.device in ("auto", "cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = inference.pick_device(opts.device)
    return world, rank, device


def _all_sum(value, device, world):
    if world == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


# ------------------------------------------------------------------------------ train
def validate(model, videos, k, device, autocast_dtype=None):
    """Pooled macro F1 of soft-voted, smoothed predictions: exactly infer | smooth | score."""
    pairs = []
    for video in videos:
        logits = inference.predict_video(model, video, device=device, autocast_dtype=autocast_dtype)
        pairs.append((video.vid, smoothing.smooth(logits, k, "median")[0], video.labels))
    return scoring.score(pairs)


def train(train_rows, cfg, opts, checkpoint_dir, val_rows=None, log=print, stop_after_steps=None,
          progress_every=30.0):
    """Train and return (model with the best weights, summary). Raises Preempted after a checkpoint."""
    # from the first moment: a SIGUSR1 during start-up must not kill the job (its default action)
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signal.Signals(signum).name

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        return _train(train_rows, cfg, opts, checkpoint_dir, val_rows, log, stop_after_steps, stop, progress_every)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(train_rows, cfg, opts, checkpoint_dir, val_rows, log, stop_after_steps, stop, progress_every):
    world, rank, device = _dist_setup(opts)
    if opts.batch_size % world:
        raise AbawError(f"--batch-size {opts.batch_size} must be divisible by the {world} processes")
    torch.manual_seed(opts.seed)
    trainset = WindowSet(train_rows, cfg.window)
    cfg.visual_dim, cfg.audio_dim = trainset.dims
    val_videos = []
    if val_rows:
        val_videos = list(data.open_videos(val_rows).values())
        if {v.dims for v in val_videos} != {trainset.dims}:
            raise AbawError("validation features have other dimensions than the training features")
        if not any((v.labels >= 0).any() for v in val_videos):
            raise AbawError("--val: every frame of the validation videos is labelled -1, nothing to score")

    model = build_model(cfg)
    counts = trainset.class_counts()
    weights = None
    if opts.class_weights:
        weights = torch.tensor(loss.effective_number_weights(counts, opts.beta), dtype=torch.float32, device=device)
    v_mean, v_std = data.feature_stats([v.visual for v in trainset.videos.values()])
    a_mean, a_std = data.feature_stats([v.audio for v in trainset.videos.values()])
    with torch.no_grad():
        model.v_norm.mean.copy_(torch.from_numpy(v_mean))
        model.v_norm.std.copy_(torch.from_numpy(v_std))
        model.a_norm.mean.copy_(torch.from_numpy(a_mean))
        model.a_norm.std.copy_(torch.from_numpy(a_std))
    model.to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    steps_per_epoch = math.ceil(len(trainset.items) / opts.batch_size)
    total = steps_per_epoch * opts.epochs
    warmup_steps = max(1, int(opts.warmup * total))
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: lr_factor(s, total, warmup_steps))
    autocast_dtype = torch.bfloat16 if (device.type == "cuda" and opts.bf16) else None

    fingerprint = _fingerprint(train_rows, cfg, opts)
    state_path = os.path.join(checkpoint_dir, "checkpoint.pt")
    marker = os.path.join(checkpoint_dir, PREEMPTED_MARKER)
    if rank == 0 and os.path.exists(marker):
        os.unlink(marker)
    epoch, batch_in_epoch, history, best, resumed_loss = 0, 0, [], None, 0.0
    best_state = None
    if os.path.exists(state_path):
        ckpt = torch.load(state_path, map_location="cpu", weights_only=True)
        if ckpt["fingerprint"] != fingerprint:
            raise AbawError(f"{state_path} belongs to another run (other data, model or options); "
                            "use a fresh --resume folder")
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optim"])
        sched.load_state_dict(ckpt["sched"])
        mine = rank if ckpt["world"] == world else 0
        torch.set_rng_state(ckpt["torch_rng"][mine])
        if device.type == "cuda" and ckpt["cuda_rng"][mine].numel():
            torch.cuda.set_rng_state(ckpt["cuda_rng"][mine], device)
        epoch, batch_in_epoch = int(ckpt["epoch"]), int(ckpt["batch"])
        resumed_loss = float(ckpt["loss_sum"])  # this epoch's loss so far, for an honest epoch mean
        history = json.loads(ckpt["history"])
        best = json.loads(ckpt["best"])
        best_state = ckpt.get("best_state") or None
        if rank == 0:
            log(f"resumed from {state_path}: epoch {epoch + 1}, batch {batch_in_epoch}/{steps_per_epoch}")
    else:
        torch.manual_seed(opts.seed * 1000 + rank)  # per-rank dropout streams

    def save_checkpoint():
        # every rank's generators: dropout and modality dropout draw from them (CUDA's on a GPU)
        rng = (torch.get_rng_state(),
               torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0, dtype=torch.uint8))
        rngs = [None] * world if world > 1 else [rng]
        if world > 1:
            dist.all_gather_object(rngs, rng)
        if rank != 0:
            return
        os.makedirs(checkpoint_dir, exist_ok=True)
        state = {
            "fingerprint": fingerprint, "world": world, "epoch": epoch, "batch": batch_in_epoch,
            "model": model.state_dict(), "optim": optim.state_dict(), "sched": sched.state_dict(),
            "torch_rng": [r[0] for r in rngs], "cuda_rng": [r[1] for r in rngs], "history": json.dumps(history), "best": json.dumps(best), "loss_sum": loss_sum,
            "best_state": best_state or {},
        }
        tmp = state_path + ".part"
        torch.save(state, tmp)
        os.replace(tmp, state_path)

    if rank == 0:
        log(f"training {cfg.arch}: {len(trainset.items)} windows from {len(trainset.videos)} videos, "
            f"{sum(p.numel() for p in model.parameters())} parameters, {world} process(es) on {device}")
        log("class counts in training windows: " + ", ".join(f"{c}={n}" for c, n in zip(CLASSES, counts)))
    steps_done = 0
    while epoch < opts.epochs:
        # the epoch's order depends on (seed, epoch) only, so a resumed run replays it exactly
        order = np.random.default_rng([opts.seed, epoch]).permutation(len(trainset.items))
        net.train()
        t0, seen, loss_sum = time.monotonic(), 0, resumed_loss
        resumed_loss = 0.0
        last_note = t0
        while batch_in_epoch < steps_per_epoch:
            idx = order[batch_in_epoch * opts.batch_size : (batch_in_epoch + 1) * opts.batch_size]
            mine = idx[rank::world]
            idle = len(mine) == 0  # a last batch smaller than the world: DDP still needs every rank's step
            batch = inference.to_tensors(
                data.cut_batch([trainset.items[i] for i in (idx[:1] if idle else mine)], cfg.window,
                               cfg.audio_context), device
            )
            if idle:
                batch["labels"].fill_(-1)  # a window that adds nothing to the loss
            valid_here = int((batch["labels"] >= 0).sum())
            valid_all = _all_sum(valid_here, device, world)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = net(batch["visual"], batch["audio"], batch["visual_mask"], batch["audio_mask"])
            # sum over this rank's frames / all ranks' valid frames, times world because DDP
            # averages gradients: the update is exactly Eq. 5 over the global batch
            local = loss.focal_loss(logits, batch["labels"], opts.gamma, weights) * max(valid_here, 1)
            batch_loss = local * world / max(valid_all, 1.0)
            optim.zero_grad(set_to_none=True)
            batch_loss.backward()
            optim.step()
            sched.step()
            batch_in_epoch += 1
            steps_done += 1
            seen += len(idx)
            loss_sum += _all_sum(local.item(), device, world) / max(valid_all, 1.0)
            if rank == 0 and time.monotonic() - last_note >= progress_every:
                last_note = time.monotonic()
                log(f"epoch {epoch + 1}/{opts.epochs}: step {batch_in_epoch}/{steps_per_epoch}, "
                    f"loss {loss_sum / max(batch_in_epoch, 1):.4f}, {seen / max(last_note - t0, 1e-9):.0f} windows/s")
            interrupt = stop["signal"] or (stop_after_steps is not None and steps_done >= stop_after_steps)
            if _all_sum(1.0 if interrupt else 0.0, device, world) > 0:
                save_checkpoint()
                why = stop["signal"] or f"stopped after {steps_done} steps"
                if rank == 0:
                    # for job scripts: under torchrun the exit status 75 does not survive
                    with open(marker, "w") as fh:
                        fh.write(why + "\n")
                raise Preempted(why)
        rate = seen / max(time.monotonic() - t0, 1e-9)
        record = {"epoch": epoch + 1, "loss": loss_sum / steps_per_epoch, "windows_per_s": rate,
                  "lr": sched.get_last_lr()[0]}
        if val_videos and rank == 0:
            result = validate(model, val_videos, opts.smooth_k, device, autocast_dtype)
            record.update(val_macro_f1=result["macro_f1"], val_accuracy=result["accuracy"])
            if best is None or result["macro_f1"] > best["val_macro_f1"]:
                best = dict(record)
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        history.append(record)
        if rank == 0:
            log("epoch {epoch}/{n}: loss {loss:.4f}, {windows_per_s:.0f} windows/s".format(n=opts.epochs, **record)
                + (f", val macro F1 {record['val_macro_f1']:.4f} acc {record['val_accuracy']:.4f}"
                   if "val_macro_f1" in record else ""))
        epoch += 1
        batch_in_epoch, loss_sum = 0, 0.0
        save_checkpoint()

    final = copy.deepcopy(model).cpu()
    if best_state:
        final.load_state_dict(best_state)
    summary = {"epochs": opts.epochs, "history": history, "best": best, "class_counts": counts.tolist(),
               "class_weights": None if weights is None else weights.cpu().tolist(), "options": asdict(opts),
               "world_size": world}
    return final.eval(), summary, rank

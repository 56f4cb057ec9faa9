"""The one training loop behind `abaw train` and `abaw finetune`.

What it owns: process groups (torchrun: NCCL on GPUs, gloo on CPU), seeding, AdamW with linear
warmup + cosine decay over parameter groups, gradient accumulation, bf16 autocast on CUDA, per-
epoch validation with the best epoch kept and optional early stopping, progress on stderr, and
checkpoints (every epoch, every N steps, and at once on SIGTERM/SIGUSR1, after which it raises
`Preempted` and the command exits 75) from which the same command continues exactly.

What differs between the window model and a vision backbone is passed in as a *job* (see `Job`):
how to build the model, the items of an epoch and how to load them, the loss, and validation.
"""

import contextlib
import copy
import datetime
import hashlib
import json
import math
import os
import signal
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.distributed as dist

from abawtools import runtime
from abawtools.errors import AbawError

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: a checkpoint was written; run the same command again to continue
PREEMPTED_MARKER = "PREEMPTED"  # written into the checkpoint folder alongside that exit status


class Preempted(Exception):
    """Raised after a checkpoint was written because SLURM (or a user) asked the job to stop."""


class Job:
    """What a training run needs besides the loop. Subclasses fill in every method but `order`.

    `opts` (a dataclass) must have: epochs, batch_size (global, per micro-batch), accumulate, lr,
    weight_decay, warmup, seed, device, dtype, patience, checkpoint_every.
    """

    unit = "items"  # for progress lines: windows, images
    ddp_kwargs = {}

    def build(self, device, rank, world, log):
        """Read the data, build the model (on the CPU, after the loop seeded torch) and return it."""
        raise NotImplementedError

    def size(self):
        """Number of training items in an epoch."""
        raise NotImplementedError

    def order(self, epoch, seed):
        """The epoch's item order: a function of (seed, epoch) only, so a resumed run replays it."""
        return np.random.default_rng([seed, epoch]).permutation(self.size())

    def batches(self, index_lists, device):
        """Yield one batch (a dict of tensors on `device`) per list of item indices, in order."""
        raise NotImplementedError

    def loss(self, net, batch, key):
        """(sum of the per-item losses over this rank's batch, number of items that count).

        `key` = (epoch, batch, micro-batch, rank) seeds any augmentation, so it is replayed exactly."""
        raise NotImplementedError

    def param_groups(self, model):
        """[{"params": [...], "lr_scale": s, "weight_decay": wd?}, ...]; default: one group."""
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]

    def validate(self, model, device, autocast_dtype):
        """{"macro_f1": ..., "accuracy": ...} on the validation set, or None when there is none."""
        return None

    def fingerprint(self):
        """A digest of what the run reads (items, files, their sizes and times): resume only onto these."""
        raise NotImplementedError

    def summary(self):
        return {}


def lr_factor(step, total, warmup_steps):
    """Linear warmup over `warmup_steps`, then cosine decay to 0 at `total`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def file_signature(paths):
    """Digest of files by path, size and modification time (cheap, catches new features)."""
    h = hashlib.sha256()
    for path in paths:
        try:
            st = os.stat(path)
            h.update(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}|missing\n".encode())
    return h.hexdigest()


# ------------------------------------------------------------------------ distributed
def dist_timeout_minutes():
    value = os.environ.get("ABAW_DIST_TIMEOUT_MIN", "120")
    try:
        minutes = float(value)
    except ValueError:
        minutes = float("nan")
    if not (minutes > 0 and math.isfinite(minutes)):
        raise AbawError(f"ABAW_DIST_TIMEOUT_MIN={value!r}: expected minutes > 0")
    return minutes


def dist_setup(device_name):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if world > 1 and not dist.is_initialized():
        # Validation runs on rank 0 alone while the other ranks wait in the next collective; NCCL's
        # default 10-minute watchdog would kill them while a large backbone scores every Aff-Wild2
        # validation frame. The group's timeout is 2 hours (ABAW_DIST_TIMEOUT_MIN to change it).
        timeout = datetime.timedelta(minutes=dist_timeout_minutes())
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    rank = dist.get_rank() if world > 1 else 0
    if world > 1 and use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = runtime.pick_device(device_name)
    return world, rank, device


def all_sum(value, device, world):
    if world == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


# ------------------------------------------------------------------------------ loop
def fit(job, opts, checkpoint_dir, log=print, stop_after_steps=None, progress_every=30.0):
    """Train and return (model with the best weights, summary, rank). Raises Preempted after a checkpoint."""
    # from the first moment: a SIGUSR1 during start-up must not kill the job (its default action)
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signal.Signals(signum).name

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        return _fit(job, opts, checkpoint_dir, log, stop_after_steps, stop, progress_every)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if dist.is_initialized():
            dist.destroy_process_group()


def _fit(job, opts, checkpoint_dir, log, stop_after_steps, stop, progress_every):
    run = _Run(job, opts, checkpoint_dir, log, stop_after_steps, stop, progress_every)
    run.resume()
    run.announce()
    while run.epoch < opts.epochs and not run.stopped_early():
        seen, rate = run.train_epoch()
        run.end_epoch(rate)
    return run.finish()


class _Run:
    """One training run, step by step: set-up (__init__), resume, an epoch (train_epoch, its
    steps planned by plan_epoch), validation and the epoch's record (end_epoch), checkpoints
    (save_checkpoint) and the result (finish). Its attributes are the run's state, which a
    checkpoint holds and a resume restores."""

    # ---------------------------------------------------------------------------- set-up
    def __init__(self, job, opts, checkpoint_dir, log, stop_after_steps, stop, progress_every):
        self.job, self.opts, self.checkpoint_dir, self.log = job, opts, checkpoint_dir, log
        self.stop_after_steps, self.stop, self.progress_every = stop_after_steps, stop, progress_every
        self.world, self.rank, self.device = world, rank, device = dist_setup(opts.device)
        if opts.batch_size % world:
            raise AbawError(f"--batch-size {opts.batch_size} must be divisible by the {world} processes")
        torch.manual_seed(opts.seed)
        self.model = model = job.build(device, rank, world, log)
        model.to(device)
        self.net = torch.nn.parallel.DistributedDataParallel(model, **job.ddp_kwargs) if world > 1 else model

        self.n_items = job.size()
        self.per_step = opts.batch_size * opts.accumulate
        self.steps_per_epoch = math.ceil(self.n_items / self.per_step)
        total = self.steps_per_epoch * opts.epochs
        warmup_steps = max(1, int(opts.warmup * total))
        groups = [
            {"params": g["params"], "lr": opts.lr * g.get("lr_scale", 1.0),
             "weight_decay": g.get("weight_decay", opts.weight_decay)}
            for g in job.param_groups(model) if g["params"]
        ]
        self.optim = torch.optim.AdamW(groups, lr=opts.lr, weight_decay=opts.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optim, lambda s: lr_factor(s, total, warmup_steps))
        self.autocast_dtype = runtime.autocast_dtype(device, opts.dtype)

        h = hashlib.sha256(job.fingerprint().encode())
        keep = {k: v for k, v in asdict(opts).items() if k not in ("device", "checkpoint_every")}
        h.update(json.dumps(keep, sort_keys=True).encode())
        self.fingerprint = h.hexdigest()[:16]
        self.state_path = os.path.join(checkpoint_dir, "checkpoint.pt")
        self.marker = os.path.join(checkpoint_dir, PREEMPTED_MARKER)
        if rank == 0 and os.path.exists(self.marker):
            os.unlink(self.marker)
        self.epoch, self.batch_in_epoch, self.history, self.best, self.resumed_loss = 0, 0, [], None, 0.0
        self.best_state = None
        self.written_best = None  # the best-weights file this checkpoint folder holds for this run
        self.steps_done, self.loss_sum = 0, 0.0

    def resume(self):
        """Continue from the checkpoint when there is one (of this very run), else seed each rank."""
        if not os.path.exists(self.state_path):
            torch.manual_seed(self.opts.seed * 1000 + self.rank)  # per-rank dropout streams
            return
        ckpt = load_checkpoint(self.state_path)
        if ckpt["fingerprint"] != self.fingerprint:
            raise AbawError(f"{self.state_path} belongs to another run (other data, features, model or options); "
                            f"delete {self.checkpoint_dir} to start over, or give another --resume folder")
        self.model.load_state_dict(ckpt["model"])
        self.optim.load_state_dict(ckpt["optim"])
        self.sched.load_state_dict(ckpt["sched"])
        mine = self.rank if ckpt["world"] == self.world else 0
        torch.set_rng_state(ckpt["torch_rng"][mine])
        if self.device.type == "cuda" and ckpt["cuda_rng"][mine].numel():
            torch.cuda.set_rng_state(ckpt["cuda_rng"][mine], self.device)
        self.epoch, self.batch_in_epoch = int(ckpt["epoch"]), int(ckpt["batch"])
        self.resumed_loss = float(ckpt["loss_sum"])  # this epoch's loss so far, for an honest epoch mean
        self.history = json.loads(ckpt["history"])
        self.best = json.loads(ckpt["best"])
        self.best_state = ckpt.get("best_state") or None  # inside the checkpoint: abawtools 0.2.0's layout
        if ckpt.get("best_file"):
            self.best_state = load_checkpoint(os.path.join(self.checkpoint_dir, ckpt["best_file"]))
            self.written_best = ckpt["best_file"]
        if self.rank == 0:
            self.log(f"resumed from {self.state_path}: epoch {self.epoch + 1}, "
                     f"step {self.batch_in_epoch}/{self.steps_per_epoch}")
        self.loss_sum = self.resumed_loss

    def announce(self):
        if self.rank == 0:
            self.log(f"{self.n_items} {self.job.unit} per epoch, {self.steps_per_epoch} steps of {self.per_step} "
                     f"({self.opts.batch_size} x {self.opts.accumulate} accumulated), "
                     f"{sum(p.numel() for p in self.model.parameters())} parameters, {self.world} process(es) "
                     f"on {self.device}")

    # ------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self):
        world, rank, device = self.world, self.rank, self.device
        # every rank's generators: dropout and modality dropout draw from them (CUDA's on a GPU)
        rng = (torch.get_rng_state(),
               torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0, dtype=torch.uint8))
        rngs = [None] * world if world > 1 else [rng]
        if world > 1:
            dist.all_gather_object(rngs, rng)
        if rank != 0:
            return
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        # the best epoch's weights go to their own file, written once per new best rather than
        # in every checkpoint (BEiT-large: 1.2 GB of a 4.8 GB checkpoint); the checkpoint names
        # it, and a file it no longer names is removed only after the checkpoint is in place
        best_file = f"best-epoch{self.best['epoch']}.pt" if self.best_state else ""
        if best_file and best_file != self.written_best:
            _save_atomically(self.best_state, os.path.join(self.checkpoint_dir, best_file))
            self.written_best = best_file
        state = {
            "fingerprint": self.fingerprint, "world": world, "epoch": self.epoch, "batch": self.batch_in_epoch,
            "model": self.model.state_dict(), "optim": self.optim.state_dict(), "sched": self.sched.state_dict(),
            "torch_rng": [r[0] for r in rngs], "cuda_rng": [r[1] for r in rngs],
            "history": json.dumps(self.history), "best": json.dumps(self.best), "loss_sum": self.loss_sum,
            "best_file": best_file,
        }
        _save_atomically(state, self.state_path)
        for name in os.listdir(self.checkpoint_dir):  # earlier bests, and a kill's half-written one
            if name.startswith("best-epoch") and name != best_file:
                os.unlink(os.path.join(self.checkpoint_dir, name))

    def stopped_early(self):
        """Early stopping: `patience` epochs in a row without a better validation score."""
        opts, best, history = self.opts, self.best, self.history
        return bool(opts.patience and best and history and history[-1]["epoch"] - best["epoch"] >= opts.patience)

    # ------------------------------------------------------------------------------ an epoch
    def plan_epoch(self, order):
        """This rank's share of each micro-batch of the rest of the epoch, step by step; a share
        smaller than the world leaves a rank idle: DDP still needs its step, so it runs one item
        that counts for nothing."""
        opts, per_step, rank, world = self.opts, self.per_step, self.rank, self.world
        plan = []
        for b in range(self.batch_in_epoch, self.steps_per_epoch):
            step_items = order[b * per_step : (b + 1) * per_step]
            micro = [step_items[i : i + opts.batch_size] for i in range(0, len(step_items), opts.batch_size)]
            plan.append([(m[:1], True) if len(m[rank::world]) == 0 else (m[rank::world], False) for m in micro])
        return plan

    def train_epoch(self):
        """The rest of the current epoch; returns (items seen, items/s). Raises Preempted after a
        checkpoint on a signal or --stop-after-steps."""
        job, opts, device, world, rank = self.job, self.opts, self.device, self.world, self.rank
        order = job.order(self.epoch, opts.seed)
        self.net.train()
        t0, seen, self.loss_sum = time.monotonic(), 0, self.resumed_loss
        self.resumed_loss = 0.0
        last_note = t0
        plan = self.plan_epoch(order)
        # loaded as one stream: the job may decode on worker processes ahead of the model
        stream = iter(job.batches([items for step in plan for items, _ in step], device))
        for step in plan:
            self.optim.zero_grad(set_to_none=True)
            step_loss = 0.0
            for j, (_, idle) in enumerate(step):
                batch = next(stream)
                with runtime.autocast(device, self.autocast_dtype):
                    local, valid_here = job.loss(self.net, batch, (self.epoch, self.batch_in_epoch, j, rank))
                if idle:
                    local, valid_here = local * 0.0, 0
                valid_all = all_sum(valid_here, device, world)
                # sum over this rank's items / all ranks' valid items, times world because DDP
                # averages gradients: each micro-batch's update is the loss over the global batch;
                # accumulated micro-batches are averaged
                micro_loss = local * world / max(valid_all, 1.0)
                if len(step) > 1:
                    micro_loss = micro_loss / len(step)
                sync = world > 1 and j < len(step) - 1
                with self.net.no_sync() if sync else contextlib.nullcontext():
                    micro_loss.backward()
                step_loss += all_sum(local.item(), device, world) / max(valid_all, 1.0) / len(step)
            self.optim.step()
            self.sched.step()
            self.batch_in_epoch += 1
            self.steps_done += 1
            seen += min(self.per_step, self.n_items - (self.batch_in_epoch - 1) * self.per_step)
            self.loss_sum += step_loss
            if rank == 0 and time.monotonic() - last_note >= self.progress_every:
                last_note = time.monotonic()
                self.log(f"epoch {self.epoch + 1}/{opts.epochs}: step {self.batch_in_epoch}/{self.steps_per_epoch}, "
                         f"loss {self.loss_sum / max(self.batch_in_epoch, 1):.4f}, "
                         f"{seen / max(last_note - t0, 1e-9):.0f} {job.unit}/s")
            self.checkpoint_if_asked()
        return seen, seen / max(time.monotonic() - t0, 1e-9)

    def checkpoint_if_asked(self):
        """After a step: a checkpoint and Preempted on a signal (any rank's) or --stop-after-steps;
        else a checkpoint every --checkpoint-every steps."""
        stop = self.stop["signal"]
        interrupt = stop or (self.stop_after_steps is not None and self.steps_done >= self.stop_after_steps)
        if all_sum(1.0 if interrupt else 0.0, self.device, self.world) > 0:
            self.save_checkpoint()
            why = stop or f"stopped after {self.steps_done} steps"
            if self.rank == 0:
                # for job scripts: under torchrun the exit status 75 does not survive
                with open(self.marker, "w") as fh:
                    fh.write(why + "\n")
            raise Preempted(why)
        every = self.opts.checkpoint_every
        if every and self.batch_in_epoch % every == 0 and self.batch_in_epoch < self.steps_per_epoch:
            self.save_checkpoint()

    # ------------------------------------------------------------------------- validation
    def end_epoch(self, rate):
        """The epoch's record: its loss, validation on rank 0 (the best epoch's weights kept),
        rank 0's verdict shared for early stopping; then the epoch's checkpoint."""
        opts, job = self.opts, self.job
        record = {"epoch": self.epoch + 1, "loss": self.loss_sum / self.steps_per_epoch, f"{job.unit}_per_s": rate,
                  "lr": self.sched.get_last_lr()[0]}
        if self.rank == 0:
            result = job.validate(self.model, self.device, self.autocast_dtype)
            if result is not None:
                if "macro_f1" in result:  # EXPR (and finetune): the names 0.2.0 wrote
                    record.update(val_macro_f1=result["macro_f1"], val_accuracy=result["accuracy"])
                else:  # VA: mean CCC; AU: mean F1; multi-task: P_MTL, and its three parts
                    record.update(val_score=result["score"], val_task=result["task"])
                    if "parts" in result:
                        record.update(val_parts=result["parts"])
                if self.best is None or val_score(record) > val_score(self.best):
                    self.best = dict(record)
                    self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.world > 1:  # rank 0's verdict on the best epoch, for early stopping on every rank
            shared = [self.best]
            dist.broadcast_object_list(shared, src=0)
            self.best = shared[0]
        self.history.append(record)
        if self.rank == 0:
            self.log(f"epoch {record['epoch']}/{opts.epochs}: loss {record['loss']:.4f}, {rate:.0f} {job.unit}/s"
                     + (f", val macro F1 {record['val_macro_f1']:.4f} acc {record['val_accuracy']:.4f}"
                        if "val_macro_f1" in record else "")
                     + (f", val {score_name(record)} {record['val_score']:.4f}" if "val_score" in record else "")
                     + (" (" + ", ".join(f"{k.upper()} {v:.4f}" for k, v in record["val_parts"].items()) + ")"
                        if "val_parts" in record else ""))
        self.epoch += 1
        self.batch_in_epoch, self.loss_sum = 0, 0.0
        self.save_checkpoint()

    # ----------------------------------------------------------------------------- result
    def finish(self):
        opts, best = self.opts, self.best
        if self.rank == 0 and self.stopped_early() and self.epoch < opts.epochs:
            self.log(f"early stop after epoch {self.epoch}: no better val {score_name(best)} for {opts.patience} "
                     f"epochs (best: epoch {best['epoch']}, {val_score(best):.4f})")
        final = copy.deepcopy(self.model).cpu()
        if self.best_state:
            final.load_state_dict(self.best_state)
        summary = {"epochs": opts.epochs, "epochs_run": self.epoch, "history": self.history, "best": best,
                   "options": asdict(opts), "world_size": self.world, **self.job.summary()}
        return final.eval(), summary, self.rank


def val_score(record):
    """The validation score of an epoch's record: EXPR's macro F1 (the name 0.2.0 wrote), else
    the task's score (VA: mean CCC, AU: mean F1)."""
    return record["val_macro_f1"] if "val_macro_f1" in record else record["val_score"]


def score_name(record):
    return {"va": "mean CCC", "au": "mean AU F1", "mtl": "P_MTL"}.get(record.get("val_task"), "macro F1")


def _save_atomically(obj, path):
    tmp = path + ".part"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path):
    """A resume checkpoint, tensors and plain types only (never a pickle of code); one line if unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # torch's own message suggests weights_only=False: never pass that on for a file on disk
        raise AbawError(f"{path}: checkpoint is unreadable (truncated or not written by abaw); "
                        f"delete {os.path.dirname(path) or '.'} to start over") from None

"""What `abaw finetune` hands the training loop (engine.fit): a Hugging Face vision backbone with a
linear head on the very feature `extract-visual` extracts (visual.pooled_features), images decoded
and resized on DataLoader workers by the extraction's own `resize_face`, augmentation on the
device, and Aff-Wild2 validation scored as the challenge scores it.

Defaults where the paper is silent (§3.2, §4.1 give only the data and the two stages) are the
authors' trainer/affwild2-ft.py (Hathaway1027/abaw26-expr): AdamW lr 4e-5, head lr x20 (head
weight decay 0.01), weight decay 1e-4, cosine schedule without warmup (their own scheduler
replaces the warmup they ask for), 50 epochs, batch 64 x 8 accumulated, bf16, horizontal flip,
focal loss gamma 2 with class weights 1 / sqrt(count) normalised to mean 1, best epoch by val
macro F1, early stopping after 10 epochs without a better one. (Their label_smoothing_factor 0.1
never reaches the loss: their compute_loss replaces the Trainer's; here it is `--loss ce
--label-smoothing 0.1`.)
"""

import hashlib
import json
import os
import re
import types
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from abawtools import CLASSES, engine, formats, imagesets, loss, runtime, scoring, tasks, visual
from abawtools.errors import AbawError
from abawtools.hf import preprocessor_config


@dataclass
class FinetuneOptions:
    epochs: int = 50
    batch_size: int = 64  # global micro-batch, in images
    accumulate: int = 8
    lr: float = 4e-5
    head_lr_mult: float = 20.0
    layer_decay: float = 1.0  # < 1: layer-wise lr decay for transformer backbones (BEiT's recipe)
    weight_decay: float = 1e-4
    head_weight_decay: float = 0.01
    warmup: float = 0.0
    loss: str = "focal"  # focal | ce
    gamma: float = 2.0
    label_smoothing: float = 0.0  # ce only
    class_weights: str = "inverse-sqrt"  # none | inverse-sqrt | effective
    beta: float = 0.9999
    balanced_sampling: bool = False
    flip: bool = True
    crop_scale: float = 1.0  # random resized crop: smallest area kept (1.0: off)
    jitter: float = 0.0  # brightness / contrast / saturation, each in [1 - j, 1 + j]
    grayscale: float = 0.0  # probability
    image_size: int = 0  # 0: the model's own
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    patience: int = 10
    checkpoint_every: int = 0
    workers: int = 4


# ------------------------------------------------------------------------------- model
class BackboneClassifier(nn.Module):
    """backbone -> pooled feature (exactly what extract-visual writes) -> Linear -> logits."""

    def __init__(self, backbone, dim, num_classes):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(dim, num_classes)

    def forward(self, pixel_values):
        return self.head(visual.pooled_features(self.backbone, pixel_values).float())


def feature_dim(backbone, spec):
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        dim = visual.pooled_features(backbone, torch.zeros(1, 3, spec.size, spec.size)).shape[1]
        backbone.train(was)
    return int(dim)


def layer_id(name, layers):
    """0 for the embeddings, i + 1 for transformer block i, layers + 1 for what sits after them."""
    if "embeddings" in name or "patch_embed" in name or name.startswith(("cls_token", "mask_token")):
        return 0
    m = re.search(r"(?:^|\.)(?:layer|layers|blocks)\.(\d+)\.", name)
    return int(m.group(1)) + 1 if m else layers + 1


def class_weights(counts, kind, beta):
    counts = np.asarray(counts, np.float64)
    if kind == "none":
        return None
    if kind == "effective":
        return loss.effective_number_weights(counts, beta)
    return loss.inverse_sqrt_weights(counts)


# -------------------------------------------------------------------------- augmentation
def augment(x, gen, opts):
    """Random resized crop, horizontal flip, colour jitter and grayscale, per image, on x's device.

    x: (N, 3, H, W) uint8; returns float in [0, 255]. Every random number comes from `gen` (a CPU
    generator seeded from the step), so a resumed run draws exactly the same augmentations.
    """
    n = x.shape[0]
    x = x.float()

    def u(lo, hi):
        return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(x.device)

    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device) if opts.flip else torch.zeros(n, dtype=torch.bool,
                                                                                          device=x.device)
    if opts.crop_scale < 1.0:
        area = u(opts.crop_scale, 1.0)
        ratio = torch.exp(u(np.log(3 / 4), np.log(4 / 3)))
        w, h = torch.sqrt(area * ratio).clamp(max=1.0), torch.sqrt(area / ratio).clamp(max=1.0)
        cx, cy = u(-1.0, 1.0) * (1 - w), u(-1.0, 1.0) * (1 - h)
        sx = torch.where(flip, -w, w)
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, h, cy
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    elif opts.flip:
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    gray_w = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    if opts.jitter > 0:
        j = opts.jitter
        x = x * u(1 - j, 1 + j).view(n, 1, 1, 1)
        mean = (x * gray_w).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        x = (x - mean) * u(1 - j, 1 + j).view(n, 1, 1, 1) + mean
        gray = (x * gray_w).sum(1, keepdim=True)
        x = (x - gray) * u(1 - j, 1 + j).view(n, 1, 1, 1) + gray
    if opts.grayscale > 0:
        pick = (torch.rand(n, generator=gen) < opts.grayscale).to(x.device)
        x = torch.where(pick[:, None, None, None], (x * gray_w).sum(1, keepdim=True).expand_as(x), x)
    return x.clamp(0, 255)


# ---------------------------------------------------------------------------------- data
class ImageDataset(torch.utils.data.Dataset):
    """Items of an ImageIndex as (uint8 (3, S, S), label, readable); runs on DataLoader workers."""

    def __init__(self, index, spec):
        self.index, self.spec = index, spec

    def __len__(self):
        return len(self.index)

    def load(self, i):
        image = read_image(self.index.path(i))
        if image is None:
            return None
        x, y, w, h = (int(v) for v in self.index.box[i])
        if w > 0 and h > 0:
            H, W = image.shape[:2]
            x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
            if not (x1 > x0 and y1 > y0):
                return None  # a face box wholly outside its picture: no face to train on, not the whole photo
            image = image[y0:y1, x0:x1]
        return visual.resize_face(image, self.spec)

    def __getitem__(self, i):
        rgb = self.load(i)
        ok = rgb is not None
        if not ok:
            rgb = np.zeros((self.spec.size, self.spec.size, 3), np.uint8)
        # EXPR: the class id; VA / AU: the frame's row of values (tasks.Task), collated into (B, 2 | 12)
        target = int(self.index.label[i]) if self.index.target is None else self.index.target[i]
        return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1), target, ok, i


def read_image(path):
    """A BGR image, or None when it cannot be read whole: a JPEG without its end-of-image marker (a
    truncated copy) is unreadable, never trained on as a half-grey picture."""
    import cv2

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-4096:]:
        return None
    if not data:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _worker_init(_):
    import cv2

    cv2.setNumThreads(1)  # N workers x all cores each would oversubscribe the machine


def loader(dataset, index_lists, workers, device):
    # Its own generator: an iterator's worker seed would otherwise be drawn from torch's global
    # generator, shifting every dropout mask after a resume (measured: weights 3.4e-3 apart with
    # hidden_dropout_prob 0.1). Nothing random happens on the workers, so a fixed seed is enough.
    return torch.utils.data.DataLoader(dataset, batch_sampler=index_lists, num_workers=workers,
                                       pin_memory=device.type == "cuda", worker_init_fn=_worker_init,
                                       generator=torch.Generator().manual_seed(0))


def check_readable(index, spec, sample=8):
    """One line naming the source when none of its first images decodes (all corrupt or missing)."""
    data = ImageDataset(index, spec)
    picks = np.linspace(0, len(index) - 1, min(sample, len(index))).astype(int)
    if all(data.load(int(i)) is None for i in picks):
        raise AbawError(f"{index.name}: none of {len(picks)} sampled images could be read "
                        f"(e.g. {index.path(int(picks[0]))}); check the path and the files")


# ------------------------------------------------------------------------------- job
class FinetuneJob(engine.Job):
    unit = "images"
    ddp_kwargs = {"find_unused_parameters": True}  # e.g. BEiT's mask token takes no part

    def __init__(self, base, parts, opts, val_parts=None, log=print):
        self.base, self.opts, self.log = base, opts, log
        self.parts = list(parts) + list(val_parts or [])  # for the readability check
        self.index = imagesets.ImageIndex.concat(list(parts))
        self.val_index = imagesets.ImageIndex.concat(list(val_parts), "val") if val_parts else None
        self.task = self.index.task  # one track per run (ImageIndex.concat)
        if self.val_index is not None:
            tasks.one_task({"the training sources": self.task, "the validation sources": self.val_index.task},
                           "training and validation")
        if self.task is tasks.EXPR:
            # 7 classes (the static sets: six basic expressions + neutral) unless a source has Other
            self.classes = list(CLASSES if (self.index.label == 7).any() else CLASSES[:7])
            self.counts = self.index.counts(len(self.classes))
        else:  # the track's outputs (VA: valence, arousal; AU: the 12 AUs; multi-task: the 22)
            self.classes = list(self.task.output_names)
            self.counts, self._weights = self.task.train_weights(
                [(self.index.target, np.ones(len(self.index.target), np.int64))],
                types.SimpleNamespace(class_weights=opts.class_weights != "none", beta=opts.beta,
                                      task_weights=(1.0, 1.0, 1.0)))
            if self.counts is None:  # VA: nothing to count
                self.counts = np.zeros(2, np.int64)
        self.weights = None
        self.unreadable = 0

    def build(self, device, rank, world, log):
        opts = self.opts
        backbone = visual.load_backbone(self.base, "cpu", None)
        notes = []
        spec = visual.ImageSpec.from_pretrained(self.base, backbone.config, notes)
        patch = visual.patch_size(backbone.config)  # the command checks it first (exit 2); library callers here
        if opts.image_size and opts.image_size < patch:
            raise AbawError(f"--image-size {opts.image_size} is smaller than {self.base}'s patch "
                            f"({patch} pixels): give at least {patch}")
        if rank == 0:
            for note in notes:
                log(f"warning: {note}")
        if opts.image_size:
            spec = visual.ImageSpec(opts.image_size, spec.resample, spec.scale, spec.mean, spec.std)
        self.spec = spec
        for part in self.parts:
            check_readable(part, spec)
        model = BackboneClassifier(backbone, feature_dim(backbone, spec), len(self.classes))
        head = visual.read_head(self.base) if os.path.isdir(self.base) else None
        self.head_note = "new head"
        if head is not None:
            if head[2] == self.classes:
                with torch.no_grad():
                    model.head.weight.copy_(head[0])
                    model.head.bias.copy_(head[1])
                self.head_note = f"head of {self.base} kept ({len(self.classes)} classes)"
            else:
                self.head_note = f"head rebuilt: {len(head[2])} classes -> {len(self.classes)}"
        if self.task is not tasks.EXPR and opts.balanced_sampling:
            raise AbawError("--balanced-sampling draws the EXPR classes evenly; it has no meaning for VA or AU labels")
        # EXPR: --class-weights; the other tracks' own (AU: negatives / positives per AU, capped at 10)
        w = class_weights(self.counts, opts.class_weights, opts.beta) if self.task is tasks.EXPR else self._weights
        self.weights = loss.weights_on(w, device)
        self.dataset = ImageDataset(self.index, spec)
        if rank == 0:
            log(f"fine-tuning {self.base} ({type(backbone).__name__}, input {spec.size}x{spec.size}, "
                f"{self.head_note}) on {len(self.index)} images, classes {', '.join(self.classes)}")
        return model

    def size(self):
        return len(self.index)

    def param_groups(self, model):
        """Backbone at lr (times layer_decay ** depth-from-top for transformer blocks), head at
        lr x head_lr_mult with its own weight decay."""
        opts = self.opts
        layers = getattr(model.backbone.config, "num_hidden_layers", None)
        groups = {}
        for name, p in model.backbone.named_parameters():
            if not p.requires_grad:
                continue
            scale = 1.0
            if opts.layer_decay < 1.0 and layers:
                scale = opts.layer_decay ** (layers + 1 - layer_id(name, layers))
            groups.setdefault(scale, []).append(p)
        out = [{"params": ps, "lr_scale": scale} for scale, ps in sorted(groups.items())]
        out.append({"params": list(model.head.parameters()), "lr_scale": opts.head_lr_mult,
                    "weight_decay": opts.head_weight_decay})
        return out

    def order(self, epoch, seed):
        rng = np.random.default_rng([seed, epoch])
        if not self.opts.balanced_sampling:
            return rng.permutation(len(self.index))
        # class-balanced: every class equally likely per draw, items drawn with replacement
        per_class = np.maximum(self.counts, 1)[self.index.label]
        p = 1.0 / per_class
        return rng.choice(len(self.index), size=len(self.index), replace=True, p=p / p.sum())

    def batches(self, index_lists, device):
        for pixels, labels, ok, items in loader(self.dataset, index_lists, self.opts.workers, device):
            gone = ok if labels.dim() == 1 else ok[:, None]  # an unreadable image: its target is invalid
            fill = torch.as_tensor(np.broadcast_to(self.task.padding(), labels.shape[1:]).copy(), dtype=labels.dtype)
            labels = torch.where(gone, labels, fill)
            yield {"pixels": pixels.to(device, non_blocking=True), "labels": labels.to(device), "ok": ok,
                   "items": items}

    def loss(self, net, batch, key):
        bad = int((~batch["ok"]).sum())
        if bad and not self.unreadable:
            first = self.index.path(int(batch["items"][~batch["ok"]][0]))
            self.log(f"warning: unreadable images are skipped (the first: {first}: missing, truncated, not an "
                     "image, or its face box outside it); their count goes to finetune.json")
        self.unreadable += bad
        seed = int(np.random.SeedSequence([self.opts.seed, *key]).generate_state(1)[0])
        x = augment(batch["pixels"], torch.Generator().manual_seed(seed), self.opts)
        logits = net(visual.normalize(x, self.spec))
        labels = batch["labels"]
        if self.task is not tasks.EXPR:  # the track's own loss on its activated outputs (VA: tanh, 1 - CCC)
            mean, valid = self.task.loss(self.task.activate(logits.float()), labels, self.weights)
            return mean * max(valid, 1), valid
        valid = int((labels >= 0).sum())  # EXPR: focal or cross-entropy (--loss), label smoothing
        if self.opts.loss == "focal":
            return loss.focal_loss(logits, labels, self.opts.gamma, self.weights) * max(valid, 1), valid
        return F.cross_entropy(logits.float(), labels, weight=self.weights, ignore_index=-1, reduction="sum",
                               label_smoothing=self.opts.label_smoothing), valid

    @torch.no_grad()
    def predict(self, model, index, device, autocast_dtype):
        """(N, 8) logits in ABAW order for every image of `index`."""
        data = ImageDataset(index, self.spec)
        B = self.opts.batch_size
        lists = [list(range(i, min(i + B, len(index)))) for i in range(0, len(index), B)]
        out, was = [], model.training
        model.eval()
        columns = list(range(len(self.classes)))
        for pixels, _, ok, _ in loader(data, lists, self.opts.workers, device):
            with runtime.autocast(device, autocast_dtype):
                logits = model(visual.normalize(pixels.to(device), self.spec)).float()
            logits = visual.head_outputs(logits, columns, self.task)
            logits[~ok.to(device)] = float("nan")  # an unreadable jpg is a frame without a face
            out.append(logits.cpu().numpy())
        model.train(was)
        return np.concatenate(out) if out else np.zeros((0, self.task.outputs), np.float32)

    def validate(self, model, device, autocast_dtype):
        if self.val_index is None:
            return None
        logits = self.predict(model, self.val_index, device, autocast_dtype)
        bad = int((~np.isfinite(logits).all(axis=1)).sum())
        if bad and not getattr(self, "_val_unreadable_said", False):
            self._val_unreadable_said = True
            how = ("scored with the nearest face frame's prediction" if self.val_index.videos
                   else "left out of the score")
            self.log(f"warning: {bad} validation image(s) of {len(self.val_index)} unreadable: {how}")
        if self.val_index.videos:
            prior = self.prior()
            fallback = visual.prior_logits(prior, range(len(prior))) if self.task is tasks.EXPR else prior
            return score_affwild2(logits, self.val_index, self.task, fallback)
        return score_images(logits, self.val_index)

    def prior(self):
        """EXPR: the training class prior (what a video without any face gets); VA / AU: the
        outputs such a video gets (visual.fallback_outputs)."""
        if self.task is not tasks.EXPR:
            return visual.fallback_outputs(self.task)
        return (self.counts + 1) / (self.counts + 1).sum()

    def fingerprint(self):
        h = hashlib.sha256(self.base.encode())
        for index in (self.index, self.val_index):
            if index is None:
                continue
            for part in (index.root, index.rel, index.label, index.box):
                h.update(part.tobytes())
            if index.target is not None:
                h.update(index.target.tobytes())
            h.update(b"|".join(map(os.fsencode, index.roots)))
            # the image folders themselves (size and time: a file added, removed or replaced)
            h.update(engine.file_signature(index.roots).encode())
        if os.path.isdir(self.base):  # the base model's own files: new weights at the same path are another run
            h.update(engine.file_signature(sorted(os.path.join(self.base, f) for f in os.listdir(self.base))).encode())
        return h.hexdigest()

    def summary(self):
        if self.task is tasks.MTL:
            return {"task": "mtl", "classes": self.classes, "counts": self.counts,
                    "weights": loss.weights_listed(self.weights), "unreadable_images_skipped": self.unreadable}
        if self.task is not tasks.EXPR:
            return {"task": self.task.name, "classes": self.classes, "au_positives" if self.task is tasks.AU
                    else "va": self.counts.tolist(), "weights": loss.weights_listed(self.weights),
                    "unreadable_images_skipped": self.unreadable}
        return {"classes": self.classes, "class_counts": self.counts.tolist(),
                "class_weights": None if self.weights is None else self.weights.cpu().tolist(),
                "unreadable_images_skipped": self.unreadable}


def score_affwild2(outputs, index, task, fallback):
    """The challenge's score over every labelled frame of the validation videos, frames pooled,
    exactly `extract-visual --logits | score`: a frame without a jpg takes the nearest face frame's
    outputs, a video without any face `fallback` (EXPR: the log class prior; VA 0, 0; AU no AU);
    then the track's prediction (EXPR argmax) and metric (EXPR macro F1, kept as "macro_f1")."""
    pairs = []
    for v, (vid, labels) in enumerate(index.videos):
        rows = np.full((len(labels), task.outputs), np.nan, np.float32)
        mine = index.video == v
        rows[index.frame[mine]] = outputs[mine]
        pairs.append((vid, task.predict(visual.fill_nearest(rows, fallback)), labels))
    return task.score(pairs)


def score_images(logits, index):
    """Macro F1 and accuracy over labelled still images (a static validation set, stage 1); an
    unreadable image is left out."""
    readable = np.isfinite(logits).all(axis=1)
    pred = np.where(readable, np.nan_to_num(logits).argmax(axis=1), 0)
    truth = np.where(readable, index.label, -1)
    return scoring.score([(index.name, pred, truth)])


# ------------------------------------------------------------------------------ output
OUTPUT_KIND = "finetune"
LEGACY_OUTPUT = ("finetune.json", visual.HEAD_FILE)  # a folder 0.2.0 wrote, before the mark


def save_finetuned(out_dir, model, spec, base, classes, prior, record, inputs=()):
    """A folder `extract-visual --model` and a next `finetune --model` load as it is: the backbone
    (config.json + model.safetensors), preprocessor_config.json, head.safetensors, finetune.json.
    Written beside the target and renamed into place: never half a folder."""
    from safetensors.torch import save_file

    with formats.atomic_folder(out_dir, OUTPUT_KIND, inputs, LEGACY_OUTPUT) as tmp:
        model.backbone.save_pretrained(tmp, safe_serialization=True)
        pre = spec.to_preprocessor_config(preprocessor_config(base) if base else {})
        with open(os.path.join(tmp, "preprocessor_config.json"), "w") as fh:
            json.dump(pre, fh, indent=2)
        head = {"weight": model.head.weight.detach().cpu().contiguous(),
                "bias": model.head.bias.detach().cpu().contiguous()}
        save_file(head, os.path.join(tmp, visual.HEAD_FILE),
                  metadata={"abaw.classes": json.dumps(classes), "abaw.prior": json.dumps([float(p) for p in prior]),
                            **({} if visual.head_task(classes).name == "expr" else
                               {"abaw.task": visual.head_task(classes).name})})
        with open(os.path.join(tmp, "finetune.json"), "w") as fh:
            json.dump(record, fh, indent=2, sort_keys=True)


def finetune(base, parts, opts, checkpoint_dir, val_parts=None, log=print, stop_after_steps=None,
             progress_every=30.0):
    """Fine-tune `base` on the sources `parts` (ImageIndex each); returns (model, summary, rank, job)."""
    job = FinetuneJob(base, parts, opts, val_parts, log)
    model, summary, rank = engine.fit(job, opts, checkpoint_dir, log, stop_after_steps, progress_every)
    return model, summary, rank, job

"""Visual front end: the feature extractors (HOG, a Hugging Face backbone, a fine-tuned head's
logits) and the threaded pipeline frames -> face crops -> features. Frame sources live in
abawtools.frames, faces in abawtools.faces, input preprocessing in abawtools.preprocess.

Frames are decoded as a stream on a background thread (never the whole video in memory), faces
are found with BlazeFace (abawtools.blazeface) or OpenCV's bundled Haar cascade (it ships inside
opencv-python-headless 4.x; 5.0 dropped it), the subject's face is tracked from frame to frame,
and crops go to the extractor in batches while the next batch is being decoded. A frame with no
(tracked) face, a missing `00042.jpg` or an unreadable file gives a row of NaN.
"""

import itertools
import json
import os
import queue
import threading

import numpy as np

from abawtools import CLASSES, NUM_CLASSES
from abawtools.backbones import _load_config, load_backbone, patch_size, pooled_features  # noqa: F401
from abawtools.errors import AbawError
from abawtools.faces import (  # noqa: F401
    ALIGN_TEMPLATE,
    SUBJECTS,
    FaceCropper,
    FaceTrack,
    ShotCuts,
    aligned_face,
    encode_crop,
    largest,
    similarity,
)
from abawtools.frames import IMAGE_EXTS, NUMBERED_IMAGE, FrameFolder, VideoFile, open_source  # noqa: F401
from abawtools.preprocess import ImageSpec, normalize, resize_face  # noqa: F401

CROPS_KIND = "extract-visual"  # the mark of a --crops folder (formats.atomic_folder)


# --------------------------------------------------------------------------- extractors
class HogExtractor:
    """Weight-free default: HOG of the 64x64 grey face crop (1764 dims), so the pipeline runs anywhere."""

    spec = ImageSpec(size=64, resample=4)  # area averaging both ways, as since 0.1.0

    def __init__(self):
        import cv2

        self.hog = cv2.HOGDescriptor((64, 64), (16, 16), (8, 8), (8, 8), 9)
        self.dim = int(self.hog.getDescriptorSize())

    def __call__(self, crops):
        import cv2

        out = np.empty((len(crops), self.dim), np.float32)
        for i, crop in enumerate(crops):
            out[i] = self.hog.compute(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)).reshape(-1)
        return out

    def feature_dim(self):
        return self.dim


HEAD_FILE = "head.safetensors"  # a fine-tuned folder's classifier: weight (K, D), bias (K), classes, prior


def read_head(folder):
    """(weight, bias, classes, prior) of a fine-tuned model folder's head, or None if it has none."""
    from safetensors import safe_open

    path = os.path.join(folder, HEAD_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with safe_open(path, framework="pt") as fh:
            meta = fh.metadata() or {}
            weight, bias = fh.get_tensor("weight"), fh.get_tensor("bias")
        classes = json.loads(meta["abaw.classes"])
        prior = json.loads(meta.get("abaw.prior", "null")) or [1.0 / len(classes)] * len(classes)
    except Exception as exc:
        raise AbawError(f"{path}: not a readable classifier head ({str(exc).splitlines()[0]})") from None
    if head_task(classes) is None or weight.shape[0] != len(classes):
        raise AbawError(f"{path}: head classes {classes} do not match its {weight.shape[0]} outputs "
                        f"or an ABAW track (the EXPR classes, valence/arousal, the 12 AUs)")
    return weight, bias, classes, prior


def head_task(classes):
    """The track of a head by its outputs' names: EXPR classes (any subset, e.g. the 7 static
    ones), exactly (valence, arousal), or exactly the 12 AUs; None for anything else."""
    from abawtools import tasks

    if all(c in CLASSES for c in classes):
        return tasks.EXPR
    for task in (tasks.VA, tasks.AU, tasks.MTL):
        if list(classes) == list(task.output_names):
            return task
    return None


def head_outputs(outputs, columns, task):
    """A head's raw outputs as the track's per-frame outputs: EXPR (N, 8) logits in ABAW order
    (head_logits), VA values through tanh (what it was trained through), AU logits as they are."""
    if task.name == "expr":  # a still-image head may have 7 of the 8 classes: placed in ABAW's order
        return head_logits(outputs, columns)
    return task.activate(outputs)


def fallback_outputs(task):
    """What a video without any face gets from a VA / AU head: VA (0, 0), AU logits of -10 (no AU)."""
    return task.fallback_outputs()


class HFImageExtractor:
    """Any Hugging Face vision model (BEiT, ViT, MAE-ViT, ResNet, ...) from a folder or a hub id.

    Pre-processing is `ImageSpec` from its preprocessor_config.json, batched with OpenCV/torch (no
    PIL, no torchvision); the feature is `pooled_features`. With `logits=True` (a folder written by
    `abaw finetune`) the output is its head's logits over the 8 ABAW classes instead.
    """

    def __init__(self, name, device="cpu", dtype=None, logits=False):
        import torch

        self.name = name
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = load_backbone(name, self.device, dtype)
        self.notes = []  # fallbacks the command says (ImageSpec.from_pretrained)
        self.spec = ImageSpec.from_pretrained(name, self.model.config, self.notes)
        self.dim = None
        self.head = None
        if logits:
            head = read_head(name) if os.path.isdir(name) else None
            if head is None:
                raise AbawError(f"--logits needs a model folder written by abaw finetune; {name} has no {HEAD_FILE}")
            weight, bias, classes, prior = head
            self.head = (weight.to(self.device, torch.float32), bias.to(self.device, torch.float32))
            self.task = head_task(classes)
            self.columns = [CLASSES.index(c) for c in classes] if self.task.name == "expr" else list(range(len(classes)))
            self.prior = np.asarray(prior, np.float64)

    def __call__(self, crops):
        import torch

        from abawtools import runtime

        x = normalize(torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2), self.spec)
        if self.dtype is not None:
            x = x.to(self.dtype)
        with torch.no_grad():
            feats = pooled_features(self.model, x).float()
            runtime.finite_output(feats, self.name, "faces", self.dtype)
            if self.head is not None:
                feats = head_outputs(feats @ self.head[0].T + self.head[1], self.columns, self.task)
        feats = feats.cpu().numpy()
        self.dim = feats.shape[1]
        return feats

    def feature_dim(self):
        if self.dim is None:
            self(np.zeros((1, self.spec.size, self.spec.size, 3), np.uint8))
        return self.dim

    def fill_missing(self, out):
        """--logits: a frame without a face takes the nearest face frame's logits (the earlier one
        on a tie); a video without any face, the log of the training class prior (VA / AU: the
        fallback_outputs). Never NaN."""
        if self.task.name != "expr":
            return fill_nearest(out, fallback_outputs(self.task))
        return fill_nearest(out, prior_logits(self.prior, self.columns))


def prior_logits(prior, columns):
    """(8,) logits of a head's training class prior: its log in the head's columns, and a class the
    head lacks the minimum - 30 (as in head_logits): what a video without any face gets."""
    log_prior = np.log(np.maximum(np.asarray(prior, np.float64), 1e-12))
    out = np.full(NUM_CLASSES, log_prior.min() - 30.0)
    out[list(columns)] = log_prior
    return out


def head_logits(logits, columns):
    """A head's (N, K) logits as (N, 8) in ABAW order; a class the head lacks (Other, after a
    static-data fine-tune) gets the row's minimum - 30, so argmax never picks it and nothing is NaN."""
    import torch

    if len(columns) == NUM_CLASSES and columns == list(range(NUM_CLASSES)):
        return logits
    out = torch.empty(logits.shape[0], NUM_CLASSES, dtype=logits.dtype, device=logits.device)
    out[:] = logits.min(dim=1, keepdim=True).values - 30.0
    out[:, columns] = logits
    return out


def fill_nearest(out, fallback):
    """Rows of NaN take the nearest finite row (ties: the earlier); all NaN -> `fallback` everywhere."""
    ok = np.flatnonzero(np.isfinite(out).all(axis=1))
    if len(ok) == 0:
        return np.broadcast_to(np.asarray(fallback, out.dtype), out.shape).copy()
    if len(ok) == len(out):
        return out
    t = np.arange(len(out))
    right = np.clip(np.searchsorted(ok, t), 0, len(ok) - 1)
    left = np.clip(right - 1, 0, len(ok) - 1)
    take_left = np.abs(t - ok[left]) <= np.abs(ok[right] - t)
    return out[np.where(take_left, ok[left], ok[right])]


def load_extractor(name, device="cpu", dtype=None, logits=False):
    if name in (None, "hog"):
        if logits:
            raise AbawError("--logits needs a fine-tuned model folder (--model DIR from abaw finetune), not hog")
        return HogExtractor()
    return HFImageExtractor(name, device, dtype, logits)


# ------------------------------------------------------------------------------ pipeline
def extract(source, extractor, cropper, batch_size=64, frames=None, progress=None, queue_batches=4, workers=None,
            subject="largest", crops_dir=None):
    """Features (T, D) float32 for every frame of `source`; NaN rows where there is no face.

    A background thread reads the source and hands each batch of frames to `workers` threads that
    decode (JPEG folders) and detect in parallel (OpenCV releases the GIL); the tracked subject's
    face is chosen in frame order (FaceTrack), then cut and resized in parallel again,
    `queue_batches` batches ahead of the extractor, so a GPU is fed while the CPUs decode. T is the
    source's frame count, or `frames` (padded with NaN / cut) to match an annotation file.

    `crops_dir`: each face crop is also written as crops_dir/%05d.jpg (frame t -> t + 1), 112x112,
    the cropped_aligned layout, and the model is given exactly that file's pixels, so reading the
    folder back with --no-detect gives the same features. The folder is written whole, beside its
    place, and replaces what was there only when the video is done (formats.atomic_folder): no
    crop of an earlier run stays mixed in, no half folder is left.
    """
    args = (source, extractor, cropper, batch_size, frames, progress, queue_batches, workers, subject)
    if not crops_dir:
        return _extract(*args, None)
    from abawtools import formats

    with formats.atomic_folder(crops_dir, CROPS_KIND, inputs=[source.path]) as tmp:
        return _extract(*args, tmp)


def _extract(source, extractor, cropper, batch_size, frames, progress, queue_batches, workers, subject, crops_dir):
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or min(8, os.cpu_count() or 1)
    q = queue.Queue(maxsize=queue_batches)
    error = []
    track, cuts = FaceTrack(subject), ShotCuts()

    def detect(pool, images):
        """Each frame's faces: one batch for the detector, per-frame work on the pool's threads."""
        present = [i for i, image in enumerate(images) if image is not None]
        faces = [None] * len(images)
        if cropper.detect and present:
            for i, found in zip(present, cropper.find_batch([images[i] for i in present], pool.map)):
                faces[i] = found
        return faces

    def cut(job):
        t, image, box = job
        region = cropper.region(image, box)
        if crops_dir:
            import cv2

            data = encode_crop(region)
            with open(os.path.join(crops_dir, f"{t + 1:05d}.jpg"), "wb") as fh:  # in the run's own folder
                fh.write(data)
            region = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return resize_face(region, cropper.spec)

    def prepare_block(pool, block):
        images = list(pool.map(source.load, [item for _, item in block]))
        thumbs = list(pool.map(lambda im: None if im is None else ShotCuts.thumbnail(im), images)) \
            if cropper.detect else [None] * len(images)
        jobs = []
        for (t, _), image, faces, thumb in zip(block, images, detect(pool, images), thumbs):
            if image is None:
                continue
            if cropper.detect:
                if cuts(thumb):
                    track.cut()
                box = track(faces, image.shape[1])
                if box is None:
                    continue
            else:
                box = None
            jobs.append((t, image, box))
        return [t for t, _, _ in jobs], list(pool.map(cut, jobs))

    def produce():
        try:
            with ThreadPoolExecutor(workers) as pool:
                block = []
                for entry in itertools.chain(source, [None]):
                    if entry is not None:
                        block.append(entry)
                    if len(block) == batch_size or (entry is None and block):
                        idx, crops = prepare_block(pool, block)
                        if idx:
                            q.put((idx, crops))
                        if progress:
                            progress(len(block))
                        block = []
        except BaseException as exc:  # re-raised in the consumer
            error.append(exc)
        finally:
            q.put(None)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    rows, feats = [], []
    while True:
        item = q.get()
        if item is None:
            break
        idx, crops = item
        rows.append(np.asarray(idx, dtype=np.int64))
        feats.append(extractor(crops))
    thread.join()
    if error:
        raise error[0]
    T = source.frames if frames is None else frames
    dim = feats[0].shape[1] if feats else extractor.feature_dim()
    out = np.full((T, dim), np.nan, np.float32)
    for idx, f in zip(rows, feats):
        keep = idx < T
        out[idx[keep]] = f[keep]
    return out


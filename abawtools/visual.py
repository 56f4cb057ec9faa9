"""Visual front end: frames (a video, or a cropped_aligned folder) -> face crops -> features.

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
import re
import threading
from dataclasses import dataclass

import numpy as np

from abawtools import CLASSES, NUM_CLASSES
from abawtools.errors import AbawError
from abawtools.hf import load_pretrained, preprocessor_config

# FFmpeg inside OpenCV prints its own complaints ("moov atom not found") on stderr; ours is the
# one-line error. Set before cv2 first loads its FFmpeg backend.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
CROPS_KIND = "extract-visual"  # the mark of a --crops folder (formats.atomic_folder)
NUMBERED_IMAGE = re.compile(r"^(\d+)\.(?:jpg|jpeg|png|bmp)$", re.IGNORECASE)


# ------------------------------------------------------------------------------ sources
class FrameFolder:
    """An Aff-Wild2 `cropped_aligned/ID/` folder: 00001.jpg is frame 0; a missing number = no face."""

    def __init__(self, path):
        self.path = path
        self.files = {}
        for name in os.listdir(path):
            m = NUMBERED_IMAGE.match(name)
            if m:
                self.files[int(m.group(1)) - 1] = os.path.join(path, name)
        if not self.files:
            raise AbawError(f"{path}: no numbered image files (00001.jpg, ...)")
        self.frames = max(self.files) + 1
        self.unreadable = 0
        self._lock = threading.Lock()

    def __iter__(self):
        """(t, path or None): reading is left to `load`, so worker threads decode in parallel."""
        for t in range(self.frames):
            yield t, self.files.get(t)

    def load(self, path):
        import cv2

        image = cv2.imread(path, cv2.IMREAD_COLOR) if path else None
        if path and image is None:
            with self._lock:
                self.unreadable += 1
        return image


class VideoFile:
    """Frames of a video file, decoded one at a time with OpenCV (FFmpeg inside the wheel)."""

    def __init__(self, path):
        import cv2

        if not os.path.exists(path):
            raise AbawError(f"{path}: no such file")
        cap = cv2.VideoCapture(path)
        ok = cap.isOpened()
        self.frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
        self.announced = self.frames  # what the container says; `frames` becomes the decoded count
        self.fps = cap.get(cv2.CAP_PROP_FPS) if ok else 0.0
        cap.release()
        if not ok:
            raise AbawError(f"{path}: cannot open as a video")
        self.path = path
        self.unreadable = 0

    def __iter__(self):
        import cv2

        cap = cv2.VideoCapture(self.path)
        t = 0
        try:
            while True:
                ok, image = cap.read()
                if not ok:
                    break
                yield t, image
                t += 1
        finally:
            cap.release()
        self.frames = t  # the container's count can be off; the decoded count is the truth

    @staticmethod
    def load(image):
        return image  # a video decodes in order, in __iter__


def open_source(path):
    return FrameFolder(path) if os.path.isdir(path) else VideoFile(path)


# ------------------------------------------------------------------------ preprocessing
# PIL's resample codes, as preprocessor_config.json stores them, and OpenCV's nearest equivalent
_RESAMPLE = {0: "INTER_NEAREST", 1: "INTER_LANCZOS4", 2: "INTER_LINEAR", 3: "INTER_CUBIC", 4: "INTER_AREA",
             5: "INTER_LINEAR"}


@dataclass(frozen=True)
class ImageSpec:
    """How a face crop becomes a model input: one definition for extraction and fine-tuning.

    size: the square input side; resample: PIL's code from preprocessor_config.json (used when a
    crop is enlarged; shrinking always uses area averaging, which is what PIL's antialiased resize
    does and what the cv2 equivalents of its filters do not); scale, mean, std: x * scale - mean / std.
    """

    size: int = 224
    resample: int = 2
    scale: float = 1 / 255
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)

    @classmethod
    def from_pretrained(cls, name, model_config=None):
        pre = preprocessor_config(name)
        size = pre.get("crop_size") or pre.get("size") or getattr(model_config, "image_size", 224)
        if isinstance(size, dict):
            size = size.get("height") or size.get("shortest_edge") or size.get("width")
        size = int(size if not isinstance(size, (list, tuple)) else size[0])
        return cls(
            size=size,
            resample=int(pre.get("resample", 2)),
            scale=float(pre.get("rescale_factor", 1 / 255)) if pre.get("do_rescale", True) else 1.0,
            mean=tuple(float(v) for v in pre.get("image_mean", cls.mean)),
            std=tuple(float(v) for v in pre.get("image_std", cls.std)),
        )

    def to_preprocessor_config(self, base=None):
        """What a fine-tuned model folder stores: `base` (the base model's preprocessor_config.json)
        changed so that `from_pretrained` here and Hugging Face's AutoImageProcessor both feed the
        model exactly what it was trained on, a size x size resize of the face crop, in every
        layout: ViT (size h/w), BEiT and DINOv2/BiT (resize, then a centre crop: turned off, both
        sizes set), ConvNeXt and ResNet (shortest_edge with crop_pct: crop_pct 1, so a square crop
        is resized whole). A base's own crop_size left in place would feed another size."""
        pre = dict(base or {})
        pre.update({"do_resize": True, "size": {"height": self.size, "width": self.size}, "resample": self.resample,
                    "do_rescale": self.scale != 1.0, "rescale_factor": self.scale, "do_normalize": True,
                    "image_mean": list(self.mean), "image_std": list(self.std)})
        if isinstance((base or {}).get("size"), dict) and "shortest_edge" in base["size"]:
            pre["size"] = {"shortest_edge": self.size}  # the ConvNeXt processor accepts no other key
        if "crop_size" in pre or "do_center_crop" in pre:
            pre.update(do_center_crop=False, crop_size={"height": self.size, "width": self.size})
        if "crop_pct" in pre:
            pre["crop_pct"] = 1.0
        return pre


def resize_face(image_bgr, spec):
    """A BGR face crop (any size) -> RGB uint8 (spec.size, spec.size, 3)."""
    import cv2

    h, w = image_bgr.shape[:2]
    if (h, w) != (spec.size, spec.size):
        shrink = h > spec.size or w > spec.size
        method = cv2.INTER_AREA if shrink else getattr(cv2, _RESAMPLE.get(spec.resample, "INTER_LINEAR"))
        image_bgr = cv2.resize(image_bgr, (spec.size, spec.size), interpolation=method)
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)


def normalize(pixels, spec):
    """uint8 or [0, 255] float tensor (N, 3, H, W) -> the model's input, float32 on its device."""
    import torch

    mean = torch.tensor(spec.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.float() * spec.scale - mean) / std


def load_backbone(name, device="cpu", dtype=None):
    """A Hugging Face vision backbone for extraction or fine-tuning, deterministic.

    Training-time randomness in the forward pass is switched off: ViT-MAE shuffles and drops 75 %
    of the patches on *every* forward, eval mode or not (its mask_ratio), so it is set to 0 and
    `pooled_features` passes an identity order; drop-path / stochastic depth is off in eval mode
    and set to 0 for fine-tuning, so what is trained is what is extracted.
    """
    overrides = {}
    config = _load_config(name)
    if hasattr(config, "mask_ratio"):
        overrides["mask_ratio"] = 0.0
    for key in ("drop_path_rate", "drop_connect_rate"):
        if hasattr(config, key):
            overrides[key] = 0.0
    return load_pretrained(name, "vision", device, dtype, **overrides)


def _load_config(name):
    from transformers import AutoConfig

    from abawtools.hf import check_name, quiet_transformers

    quiet_transformers()
    check_name(name, "vision")
    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise AbawError(f"cannot load vision model {name!r}: {str(exc).splitlines()[0]}") from None


def pooled_features(model, pixel_values):
    """The feature of the paper (§4.2): the backbone's pooled output, else the mean of its final
    hidden states over tokens (or over space, for CNNs). Extraction and fine-tuning both use it."""
    import torch

    kwargs = {}
    if getattr(model.config, "mask_ratio", None) is not None:
        # ViT-MAE: patches in their own order, all kept (mask_ratio 0): no random shuffle
        n = (model.config.image_size // model.config.patch_size) ** 2
        kwargs["noise"] = torch.arange(n, device=pixel_values.device, dtype=torch.float32).expand(len(pixel_values), n)
    out = model(pixel_values=pixel_values, **kwargs)
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        hidden = out.last_hidden_state
        pooled = hidden.mean(dim=1) if hidden.dim() == 3 else hidden.mean(dim=(2, 3))
    return pooled.reshape(len(pixel_values), -1)


# ------------------------------------------------------------------------------- faces
SUBJECTS = ("largest", "left", "right", "centre")


class FaceCropper:
    """Faces (OpenCV's Haar cascade, or BlazeFace with `detector="blazeface"`, the command line's
    default); the chosen one squared and widened by `margin` (or aligned by its keypoints), resized
    by `spec`.

    Detection (`find_batch`) is stateless: a batch of frames at a time, BlazeFace's network on its
    device, the per-frame work on worker threads; choosing whose face it is (`FaceTrack`) runs in
    frame order; cutting (`region`) is stateless again.
    """

    def __init__(self, spec=None, margin=0.25, detect=True, detect_width=320, detector="haar", align=False,
                 min_score=None, device="cpu", confirm_score=None):
        import cv2

        self.spec = spec or ImageSpec(size=112)
        self.margin, self.detect, self.detect_width = margin, detect, detect_width
        self.align = align
        if align and (detector != "blazeface" or not detect):
            raise AbawError("alignment needs facial keypoints: --detector blazeface")
        self.blazeface = None
        if detect and detector == "blazeface":
            from abawtools.blazeface import FaceFinder  # torch: only when asked for

            # alignment needs keypoints from the upright second look of every face
            self.blazeface = FaceFinder(min_score, confirm_score, refine=align, device=device)
            return
        if detector not in ("haar", "blazeface"):
            raise AbawError(f"unknown face detector {detector!r} (haar or blazeface)")
        # One CascadeClassifier per thread: `extract` detects on several worker threads, and a
        # classifier shared between them returns different faces from run to run (measured: 47,
        # 48 or 50 faceless frames of 105 on the same clip); each thread's own one is deterministic.
        self._per_thread = threading.local()
        if detect:
            if not hasattr(cv2, "CascadeClassifier"):
                raise AbawError("this OpenCV has no CascadeClassifier (5.x?): pip install 'opencv-python-headless<5'")
            self.cascade_path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
            self._cascade()  # load it now, so a broken install fails before any work

    def _cascade(self):
        import cv2

        cascade = getattr(self._per_thread, "cascade", None)
        if cascade is None:
            cascade = self._per_thread.cascade = cv2.CascadeClassifier(self.cascade_path)
            if cascade.empty():
                raise AbawError(f"cannot load the face cascade {self.cascade_path}")
        return cascade

    def find_all(self, image):
        """Every face as (x, y, w, h, keypoints or None) in full-resolution pixels, in the
        detector's order (keypoints: BlazeFace's six, (6, 2); Haar has none)."""
        import cv2

        if self.blazeface is not None:
            return self.find_batch([image])[0]
        h, w = image.shape[:2]
        scale = min(1.0, self.detect_width / max(w, 1))
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
        # no histogram equalisation: on frames with a large smooth background it stretches the
        # face's contrast away and the cascade misses it (measured: 43 % vs 100 % found)
        faces = self._cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        return [(*(int(round(v / scale)) for v in f), None) for f in faces]

    def find_batch(self, images, map=map):
        """find_all of each image; BlazeFace runs its network once for the batch (on its device),
        `map` runs the per-image work (Haar's detection, BlazeFace's resizing) in parallel."""
        if self.blazeface is None:
            return list(map(self.find_all, images))
        return [[(*box, points) for _, box, points in faces] for faces in self.blazeface.find_batch(images, map)]

    def find(self, image):
        """(x, y, w, h) of the largest face, or None."""
        face = largest(self.find_all(image))
        return face[:4] if face else None

    def region(self, image, box):
        """The BGR square around `box` (None: the whole image, e.g. a ready crop); with `align`,
        the face warped onto the 112 x 112 template (ALIGN_TEMPLATE) by its keypoints."""
        import cv2

        if box is None:
            return image
        if self.align and box[4] is not None:
            return aligned_face(image, box[4])
        x, y, w, h = box[:4]
        cx, cy, side = x + w / 2, y + h / 2, max(w, h) * (1 + self.margin)
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        x1, y1 = x0 + int(round(side)), y0 + int(round(side))
        H, Wd = image.shape[:2]
        pad = max(0, -x0, -y0, x1 - Wd, y1 - H)
        if pad:  # a face at the border: pad with black rather than shift or shrink the crop
            image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
        return image[y0:y1, x0:x1]

    def __call__(self, image):
        """RGB uint8 crop (size, size, 3) of the largest face, or None if there is no face."""
        if image is None:
            return None
        box = None
        if self.detect:
            box = largest(self.find_all(image))
            if box is None:
                return None
        return resize_face(self.region(image, box), self.spec)


# Where the right eye, the left eye, the nose tip and the mouth centre land in a 112 x 112 aligned
# crop: the ArcFace / InsightFace template that face crops like Aff-Wild2's cropped_aligned are made
# with (its two mouth corners averaged into BlazeFace's one mouth point).
ALIGN_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [56.1396, 92.2848]],
                          np.float64)


def similarity(src, dst):
    """The least-squares similarity transform (rotation, one scale, shift) taking points `src`
    onto `dst` (Umeyama 1991), as a 2 x 3 matrix; closed form, so the same every run."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    U, S, Vt = np.linalg.svd(cov)
    E = np.diag([1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ E @ Vt
    scale = np.trace(np.diag(S) @ E) / max(s.var(0).sum(), 1e-12)
    t = mu_d - scale * R @ mu_s
    return np.hstack([scale * R, t[:, None]])


def aligned_face(image, points, size=112):
    """The face warped so its eyes, nose and mouth sit on ALIGN_TEMPLATE: an upright size x size crop."""
    import cv2

    M = similarity(np.asarray(points)[:4], ALIGN_TEMPLATE * size / 112.0)
    return cv2.warpAffine(image, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def largest(faces):
    """The face with the largest box, or None."""
    return max(faces, key=lambda f: f[2] * f[3]) if faces else None


class FaceTrack:
    """Whose face, frame after frame: the first face is chosen by `subject` (largest, left, right,
    centre); after that, the face that continues the tracked box (centre within half a face width,
    size within a factor 1.5) is taken, whatever else is in the frame, so a passer-by or a false
    detection never takes over. A frame where the tracked face is not found is a frame without a
    face. When the tracked face left a frame with nobody else in it, the next face to appear is
    chosen by `subject` again (the subject coming back); when others were in view, only after
    `patience` frames without the tracked face.
    """

    def __init__(self, subject="largest", patience=25):
        if subject not in SUBJECTS:
            raise ValueError(f"unknown subject {subject!r} ({', '.join(SUBJECTS)})")
        self.subject, self.patience = subject, patience
        self.box, self.lost, self.crowded = None, 0, False

    def choose(self, faces, width):
        if not faces or self.subject == "largest":
            return largest(faces)
        key = {"left": lambda f: f[0] + f[2] / 2, "right": lambda f: -(f[0] + f[2] / 2),
               "centre": lambda f: abs(f[0] + f[2] / 2 - width / 2)}
        return min(faces, key=key[self.subject])

    def __call__(self, faces, width):
        """The tracked face's box among `faces` (one frame's detections), or None."""
        if self.box is not None:
            x, y, w, h = self.box[:4]
            near = [f for f in faces
                    if abs(f[0] + f[2] / 2 - x - w / 2) < 0.5 * w and abs(f[1] + f[3] / 2 - y - h / 2) < 0.5 * h
                    and 1 / 1.5 < f[2] / w < 1.5]
            if near:
                self.box = min(near, key=lambda f: abs(f[0] - x) + abs(f[1] - y) + abs(f[2] - w))
                self.lost, self.crowded = 0, False
                return self.box
            if not faces or self.lost == 0 or self.crowded:
                self.crowded = self.crowded or bool(faces)
                self.lost += 1
                if self.lost <= self.patience:
                    return None
        self.box = self.choose(faces, width)
        self.lost, self.crowded = 0, False
        return self.box


def encode_crop(region, size=112):
    """The crop as cropped_aligned ships it: size x size, JPEG (quality 95). Returns the bytes."""
    import cv2

    small = cv2.cvtColor(resize_face(region, ImageSpec(size=size, resample=2)), cv2.COLOR_RGB2BGR)  # bilinear up
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise AbawError("cannot encode a face crop as JPEG")
    return data.tobytes()


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
    unknown = [c for c in classes if c not in CLASSES]
    if unknown or weight.shape[0] != len(classes):
        raise AbawError(f"{path}: head classes {classes} do not match its {weight.shape[0]} outputs "
                        f"or the ABAW classes")
    return weight, bias, classes, prior


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
        self.spec = ImageSpec.from_pretrained(name, self.model.config)
        self.dim = None
        self.head = None
        if logits:
            head = read_head(name) if os.path.isdir(name) else None
            if head is None:
                raise AbawError(f"--logits needs a model folder written by abaw finetune; {name} has no {HEAD_FILE}")
            weight, bias, classes, prior = head
            self.head = (weight.to(self.device, torch.float32), bias.to(self.device, torch.float32))
            self.columns = [CLASSES.index(c) for c in classes]
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
                feats = head_logits(feats @ self.head[0].T + self.head[1], self.columns)
        feats = feats.cpu().numpy()
        self.dim = feats.shape[1]
        return feats

    def feature_dim(self):
        if self.dim is None:
            self(np.zeros((1, self.spec.size, self.spec.size, 3), np.uint8))
        return self.dim

    def fill_missing(self, out):
        """--logits: a frame without a face takes the nearest face frame's logits (the earlier one
        on a tie); a video without any face, the log of the training class prior. Never NaN."""
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
    track = FaceTrack(subject)

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
        jobs = []
        for (t, _), image, faces in zip(block, images, detect(pool, images)):
            if image is None:
                continue
            if cropper.detect:
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


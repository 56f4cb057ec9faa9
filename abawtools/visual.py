"""Visual front end: frames (a video, or a cropped_aligned folder) -> face crops -> features.

Frames are decoded as a stream on a background thread (never the whole video in memory), faces
are found with OpenCV's bundled Haar cascade (it ships inside opencv-python-headless 4.x; 5.0
dropped it), and crops go to the extractor in batches while the next batch is being decoded.
A frame with no face, a missing `00042.jpg` or an unreadable file gives a row of NaN.
"""

import itertools
import os
import queue
import re
import threading

import numpy as np

from abawtools.errors import AbawError
from abawtools.hf import load_pretrained, preprocessor_config

# FFmpeg inside OpenCV prints its own complaints ("moov atom not found") on stderr; ours is the
# one-line error. Set before cv2 first loads its FFmpeg backend.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
_NUMBERED = re.compile(r"^(\d+)\.(?:jpg|jpeg|png|bmp)$", re.IGNORECASE)


# ------------------------------------------------------------------------------ sources
class FrameFolder:
    """An Aff-Wild2 `cropped_aligned/ID/` folder: 00001.jpg is frame 0; a missing number = no face."""

    def __init__(self, path):
        self.path = path
        self.files = {}
        for name in os.listdir(path):
            m = _NUMBERED.match(name)
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


# ------------------------------------------------------------------------------- faces
class FaceCropper:
    """Largest frontal face (Haar cascade), squared and widened by `margin`, resized to `size`."""

    def __init__(self, size=112, margin=0.25, detect=True, detect_width=320):
        import cv2

        self.size, self.margin, self.detect, self.detect_width = size, margin, detect, detect_width
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

    def find(self, image):
        """(x, y, w, h) of the largest face in full-resolution pixels, or None."""
        import cv2

        h, w = image.shape[:2]
        scale = min(1.0, self.detect_width / max(w, 1))
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        # no histogram equalisation: on frames with a large smooth background it stretches the
        # face's contrast away and the cascade misses it (measured: 43 % vs 100 % found)
        faces = self._cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        if len(faces) == 0:
            return None
        x, y, fw, fh = max(faces, key=lambda f: f[2] * f[3])
        return tuple(int(round(v / scale)) for v in (x, y, fw, fh))

    def __call__(self, image):
        """RGB uint8 crop (size, size, 3), or None if there is no face."""
        import cv2

        if image is None:
            return None
        if self.detect:
            box = self.find(image)
            if box is None:
                return None
            x, y, w, h = box
            cx, cy, side = x + w / 2, y + h / 2, max(w, h) * (1 + self.margin)
            x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
            x1, y1 = x0 + int(round(side)), y0 + int(round(side))
            H, Wd = image.shape[:2]
            pad = max(0, -x0, -y0, x1 - Wd, y1 - H)
            if pad:  # a face at the border: pad with black rather than shift or shrink the crop
                image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
                x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
            image = image[y0:y1, x0:x1]
        crop = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- extractors
class HogExtractor:
    """Weight-free default: HOG of the 64x64 grey face crop (1764 dims), so the pipeline runs anywhere."""

    crop_size = 64

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


class HFImageExtractor:
    """Any Hugging Face vision model (BEiT, ViT, MAE-ViT, ResNet, ...) from a folder or a hub id.

    Pre-processing is read from its preprocessor_config.json (size, mean, std) and done batched
    with OpenCV/torch (no PIL, no torchvision); the feature is the pooler output when the model
    has one, else the mean of the final hidden states over tokens.
    """

    def __init__(self, name, device="cpu", dtype=None):
        import torch

        self.device = torch.device(device)
        self.dtype = dtype
        self.model = load_pretrained(name, "vision", self.device, dtype)
        pre = preprocessor_config(name)
        size = pre.get("crop_size") or pre.get("size") or getattr(self.model.config, "image_size", 224)
        if isinstance(size, dict):
            size = size.get("height") or size.get("shortest_edge") or size.get("width")
        self.crop_size = int(size if not isinstance(size, (list, tuple)) else size[0])
        mean = pre.get("image_mean", [0.485, 0.456, 0.406])
        std = pre.get("image_std", [0.229, 0.224, 0.225])
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.scale = float(pre.get("rescale_factor", 1 / 255)) if pre.get("do_rescale", True) else 1.0
        self.dim = None

    def __call__(self, crops):
        import torch

        x = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float()
        x = (x * self.scale - self.mean) / self.std
        if self.dtype is not None:
            x = x.to(self.dtype)
        with torch.no_grad():
            out = self.model(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            hidden = out.last_hidden_state
            pooled = hidden.mean(dim=1) if hidden.dim() == 3 else hidden.mean(dim=(2, 3))
        feats = pooled.reshape(len(crops), -1).float().cpu().numpy()
        self.dim = feats.shape[1]
        return feats

    def feature_dim(self):
        if self.dim is None:
            self(np.zeros((1, self.crop_size, self.crop_size, 3), np.uint8))
        return self.dim


def load_extractor(name, device="cpu", dtype=None):
    if name in (None, "hog"):
        return HogExtractor()
    return HFImageExtractor(name, device, dtype)


# ------------------------------------------------------------------------------ pipeline
def extract(source, extractor, cropper, batch_size=64, frames=None, progress=None, queue_batches=4, workers=None):
    """Features (T, D) float32 for every frame of `source`; NaN rows where there is no face.

    A background thread reads the source and hands each batch of frames to `workers` threads that
    decode (JPEG folders), detect and crop in parallel (OpenCV releases the GIL), `queue_batches`
    batches ahead of the extractor, so a GPU is fed while the CPUs decode. T is the source's frame
    count, or `frames` (padded with NaN / cut) to match an annotation file.
    """
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or min(8, os.cpu_count() or 1)
    q = queue.Queue(maxsize=queue_batches)
    error = []

    def prepare(item):
        return cropper(source.load(item))

    def produce():
        try:
            with ThreadPoolExecutor(workers) as pool:
                block = []
                for entry in itertools.chain(source, [None]):
                    if entry is not None:
                        block.append(entry)
                    if len(block) == batch_size or (entry is None and block):
                        crops = list(pool.map(prepare, [item for _, item in block]))
                        keep = [(t, c) for (t, _), c in zip(block, crops) if c is not None]
                        if keep:
                            q.put(([t for t, _ in keep], [c for _, c in keep]))
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


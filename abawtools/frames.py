"""Frame sources: a video file, or a folder in Aff-Wild2's cropped_aligned layout, read one way
by every command (extract-visual, finetune --affwild2 / --val).

The layout, as the organisers ship it: `cropped_aligned/ID/00001.jpg` is frame 0 of the video
(the first line of its annotation), numbered from 00001; a missing number is a frame without a
face. One reader (`numbered_frames`) keeps its rules in one place: a name numbered from 00000 is
an error (every picture would pair with the previous frame's label), two files claiming one frame
are an error (never a silent choice), other digit counts or extensions are read by their number
and said once, and a highest number far beyond the folder's images is an error, not a
100-million-row extraction.
"""

import os
import re
import threading

from abawtools.errors import AbawError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
# FFmpeg inside OpenCV prints its own complaints ("moov atom not found") on stderr; ours is the
# one-line error. Set before cv2 first loads its FFmpeg backend.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

NUMBERED_IMAGE = re.compile(r"^(\d+)\.(?:jpg|jpeg|png|bmp)$", re.IGNORECASE)
# a highest frame number beyond this many times the images present (plus a margin) is a stray file
_SPARSE = 100


class FrameLayout:
    """What `numbered_frames` found: files {t: name}, and a note when the names are not 00001.jpg."""

    def __init__(self, folder, files, note=None):
        self.folder, self.files, self.note = folder, files, note

    @property
    def frames(self):
        return max(self.files) + 1 if self.files else 0


def numbered_frames(folder, frames=None):
    """The numbered images of `folder`, by frame: `00001.jpg` -> t = 0. `frames` (T, when known)
    bounds the check for a stray huge number; without it the highest number must stay within
    100 x the images present + 1000."""
    files, other = {}, None
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise AbawError(f"{folder}: cannot list the folder ({exc.strerror})") from None
    for name in sorted(names):
        m = NUMBERED_IMAGE.match(name)
        if not m:
            continue
        t = int(m.group(1)) - 1
        if t in files:
            raise AbawError(f"{folder}: {files[t]} and {name} both claim frame {t + 1}: keep one of them")
        files[t] = name
        if other is None and name != f"{t + 1:05d}.jpg":
            other = name
    if -1 in files:
        raise AbawError(f"{folder}: {files[-1]} would be frame 0, but the cropped_aligned layout numbers frames "
                        "from 00001.jpg (frame t of the annotation is t + 1): renumber the folder from 1")
    note = None
    if other is not None:
        note = (f"{folder}: frames named like {other}, not the cropped_aligned layout's 00001.jpg; read by their "
                "number (00001 = the annotation's first line)")
    if files and frames is None and max(files) + 1 > _SPARSE * len(files) + 1000:
        raise AbawError(f"{folder}: the highest frame number is {max(files) + 1} with only {len(files)} images "
                        f"({files[max(files)]}: a stray file?); give T with --like-dir / --frames, or remove it")
    return FrameLayout(folder, files, note)


class FrameFolder:
    """An Aff-Wild2 `cropped_aligned/ID/` folder: 00001.jpg is frame 0; a missing number = no face.
    With `frames` (T) only frames 0..T-1 are visited, however high a stray file's number."""

    def __init__(self, path, frames=None):
        self.path = path
        layout = numbered_frames(path, frames)
        if not layout.files:
            raise AbawError(f"{path}: no numbered image files (00001.jpg, ...)")
        self.note = layout.note
        self.files = {t: os.path.join(path, name) for t, name in layout.files.items()}
        self.frames = layout.frames
        self.stop = self.frames if frames is None else min(self.frames, frames)
        self.unreadable = 0
        self._lock = threading.Lock()

    def __iter__(self):
        """(t, path or None): reading is left to `load`, so worker threads decode in parallel."""
        for t in range(self.stop):
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

    note = None

    def __init__(self, path):
        import cv2

        if not os.path.exists(path):
            raise AbawError(f"{path}: no such file")
        cap = cv2.VideoCapture(path)
        ok = cap.isOpened()
        self.frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
        self.announced = self.frames  # what the container says; `frames` becomes the decoded count
        self.stop = self.frames
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


def open_source(path, frames=None):
    """A FrameFolder for a folder, else a VideoFile; `frames`: T when known."""
    return FrameFolder(path, frames) if os.path.isdir(path) else VideoFile(path)

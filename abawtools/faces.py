"""Faces in a frame: detection (BlazeFace in abawtools.blazeface, or OpenCV's Haar cascade),
alignment to the cropped_aligned template, whose face it is from frame to frame (FaceTrack, with
shot cuts), and the crop as cropped_aligned ships it."""

import os
import threading

import numpy as np

from abawtools.errors import AbawError
from abawtools.preprocess import ImageSpec, resize_face

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
                 min_score=None, device="cpu", confirm_score=None, trust_score=None, check_score=None,
                 small_faces=True):
        import cv2

        self.spec = spec or ImageSpec(size=112)
        self.margin, self.detect, self.detect_width = margin, detect, detect_width
        self.align = align
        if align and (detector != "blazeface" or not detect):
            raise AbawError("alignment needs facial keypoints: --detector blazeface")
        self.blazeface = None
        if detect and detector == "blazeface":
            from abawtools.facefinder import FaceFinder  # torch: only when asked for

            # alignment needs keypoints from the upright second look of every face
            self.blazeface = FaceFinder(min_score, confirm_score, refine=align, device=device, trust=trust_score,
                                        check=check_score, tiles=small_faces)
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
    """Whose face, frame after frame.

    The subject is chosen by `subject`: the largest face, or the face on the named half of the
    frame (`left`, `right`: a face on the other half is never this subject, so an `ID_right` video
    whose right person has not come into view yet has no face, not the left person's) or nearest
    the centre. After that, the face that continues the tracked box (centre within half a face
    width, size within a factor 1.5) is taken, whatever else is in the frame, so a passer-by or a
    false detection never takes over. A frame where the tracked face is not found is a frame
    without a face. When it is lost:
    - a face alone in view, where the subject was alone in view too, is the subject at once (a
      scene cut or a jump that moves the only person: Aff-Wild2's YouTube videos cut often), if
      it is within `ALONE_SIZE` times the subject's size: a much smaller (or larger) lone face is
      someone else until proved otherwise (the small-face tiles find faces far behind a subject who
      turns away), and waits `patience` as a passer-by does;
    - where two or more faces are, or were, in view, another face is taken only after `patience`
      frames without the tracked one (a passer-by is not the subject), unless a shot cut is seen
      (`cut()`, from ShotCuts): then the subject is chosen again at once;
    - after frames with nobody in view, the next face to appear is chosen again.
    """

    ALONE_SIZE = 2.0

    def __init__(self, subject="largest", patience=25):
        if subject not in SUBJECTS:
            raise ValueError(f"unknown subject {subject!r} ({', '.join(SUBJECTS)})")
        self.subject, self.patience = subject, patience
        self.box, self.lost, self.crowded, self.alone = None, 0, False, False

    def eligible(self, faces, width):
        """The faces that can be this subject: those on the named half for left / right."""
        if self.subject == "left":
            return [f for f in faces if f[0] + f[2] / 2 < width / 2]
        if self.subject == "right":
            return [f for f in faces if f[0] + f[2] / 2 >= width / 2]
        return list(faces)

    def choose(self, faces, width):
        if not faces or self.subject == "largest":
            return largest(faces)
        key = {"left": lambda f: f[0] + f[2] / 2, "right": lambda f: -(f[0] + f[2] / 2),
               "centre": lambda f: abs(f[0] + f[2] / 2 - width / 2)}
        return min(faces, key=key[self.subject])

    def cut(self):
        """A shot boundary: whoever is in view next is chosen again, by `subject`."""
        self.box, self.lost, self.crowded = None, 0, False

    def _take(self, box, faces):
        self.box, self.lost, self.crowded = box, 0, False
        self.alone = len(faces) == 1
        return box

    def __call__(self, faces, width):
        """The tracked face's box among `faces` (one frame's detections), or None."""
        faces = list(faces)
        mine = self.eligible(faces, width)
        if self.box is not None:
            x, y, w, h = self.box[:4]
            near = [f for f in mine
                    if abs(f[0] + f[2] / 2 - x - w / 2) < 0.5 * w and abs(f[1] + f[3] / 2 - y - h / 2) < 0.5 * h
                    and 1 / 1.5 < f[2] / w < 1.5]
            if near:
                return self._take(min(near, key=lambda f: abs(f[0] - x) + abs(f[1] - y) + abs(f[2] - w)), faces)
            if (len(faces) == 1 and mine and self.alone and not self.crowded
                    and 1 / self.ALONE_SIZE <= mine[0][2] / w <= self.ALONE_SIZE):
                return self._take(mine[0], faces)  # the only person, moved (a cut): the subject
            if not faces or self.lost == 0 or self.crowded:
                self.crowded = self.crowded or bool(faces)
                self.lost += 1
                if self.lost <= self.patience:
                    return None
        box = self.choose(mine, width)
        if box is None:
            self.box, self.lost, self.crowded = None, 0, False
            return None
        return self._take(box, faces)


class ShotCuts:
    """Shot boundaries, frame by frame: PySceneDetect's content detector, reduced to its core (the
    mean absolute change of hue, saturation and value between consecutive frames, on a 64 x 36
    thumbnail; a cut above `threshold`, its default 27 on 0-255). A cut tells FaceTrack to choose
    the subject again at once instead of waiting out a passer-by's patience."""

    def __init__(self, threshold=27.0):
        self.threshold, self.last = threshold, None

    @staticmethod
    def thumbnail(image):
        import cv2

        small = cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_BGR2HSV).astype(np.int16)

    def __call__(self, thumb):
        """True when `thumb` (this frame's thumbnail, None for an unreadable frame) starts a new shot."""
        if thumb is None:
            return False
        cut = self.last is not None and float(np.abs(thumb - self.last).mean()) > self.threshold
        self.last = thumb
        return cut


def encode_crop(region, size=112):
    """The crop as cropped_aligned ships it: size x size, JPEG (quality 95). Returns the bytes."""
    import cv2

    small = cv2.cvtColor(resize_face(region, ImageSpec(size=size, resample=2)), cv2.COLOR_RGB2BGR)  # bilinear up
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise AbawError("cannot encode a face crop as JPEG")
    return data.tobytes()

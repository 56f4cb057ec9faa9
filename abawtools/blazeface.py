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


def roll_of(keypoints):
    """The head's roll in degrees (0: eyes level; positive: turned clockwise on screen), from the eyes."""
    (rx, ry), (lx, ly) = keypoints[0], keypoints[1]
    return float(np.degrees(np.arctan2(ly - ry, lx - rx)))


def upright_patch(image, face, side, size, interpolation):
    """A face's surroundings turned upright by the roll of its eyes: the square of `side` times its
    box's longer side around its centre, as a size x size RGB patch, and the 2 x 3 map from frame
    to patch pixels (the second look's input and ONet's crop are both cut so)."""
    import cv2

    _, (x, y, w, h), kp = face
    centre = (x + w / 2.0, y + h / 2.0)
    M = cv2.getRotationMatrix2D(centre, roll_of(kp), size / (side * max(w, h, 1)))
    M[:, 2] += size / 2.0 - np.array(centre)
    patch = cv2.warpAffine(image, M, (size, size), flags=interpolation, borderValue=0)
    return cv2.cvtColor(patch, cv2.COLOR_BGR2RGB), M

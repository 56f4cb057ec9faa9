"""Is it a face? MTCNN's last stage (ONet) asked of every face BlazeFace finds.

BlazeFace takes drawn faces for faces: the cartoon characters of tests/data/real/cartoon score
0.6-0.88 on its first look and are found again by its second, as real faces are (its two networks
learnt the same thing). ONet was trained apart from them, on real faces against real
non-faces (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks", 2016); on a face's upright 48 x 48 crop it gives a face/non-face logit.
Measured (benchmarks/detect_quality.py's sets): real faces 3.8-16 (small turned cyclists, LFW,
the real set, a talking head in a car), the drawn characters BlazeFace keeps -7.9-4.6; the
threshold (FaceFinder.CHECK) is a probability, 0.95 = a logit of 2.94.

The weights: facenet-pytorch 2.6.0's `onet.pt` (MIT), converted once into
abawtools/weights/mtcnn_onet.safetensors by tools/convert_mtcnn_onet.py (NOTICE-mtcnn.md).
"""

import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from abawtools.errors import AbawError

WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "mtcnn_onet.safetensors")


class ONet(nn.Module):
    """MTCNN's output network, as published: four convolutions with PReLU (three max pools), one
    dense layer of 256, then a face/non-face pair of logits (the box and landmark heads of the
    original are not needed to say whether it is a face, so they are not kept)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)

    def forward(self, x):
        """x: (N, 3, 48, 48) RGB scaled as MTCNN's (pixel - 127.5) / 128 -> (N,) face logit."""
        # ceil_mode: Caffe's pooling, which the weights were trained with (48 -> 23 -> 10 -> 5 -> 4)
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        # the dense layer was trained on Caffe's (C, W, H) flattening, not torch's (C, H, W)
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(len(x), -1)))
        logits = self.dense6_1(x)
        return logits[:, 1] - logits[:, 0]  # log(p / (1 - p)) of the softmax's face probability


class FaceCheck:
    """ONet on the faces of BGR frames: `crop(image, face)` cuts a face as ONet takes it,
    `logits_of(crops)` gives their face logits, on `device`, in one batch per call; a face whose
    logit is below `threshold` (the logit of the face probability `score`) is not a face."""

    SIZE = 48

    def __init__(self, score, device="cpu", path=WEIGHTS):
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except Exception as exc:
            raise AbawError(f"{path}: cannot read the face check's weights ({str(exc).splitlines()[0]}); "
                            "reinstall abawtools") from None
        self.device = torch.device(device)
        self.net = ONet()
        self.net.load_state_dict(state)
        self.net.eval().to(self.device)
        p = min(max(score, 1e-6), 1 - 1e-6)
        self.threshold = float(np.log(p / (1 - p)))

    def crop(self, image, face):
        """The face's box as ONet takes it: squared on its centre, turned upright by the roll of its
        eyes (ONet was trained on upright faces), 48 x 48, RGB."""
        import cv2

        from abawtools.blazeface import upright_patch

        return upright_patch(image, face, 1.0, self.SIZE, cv2.INTER_AREA)[0]

    @torch.no_grad()
    def logits_of(self, patches):
        """Face logits of prepared crops (a list of 48 x 48 RGB arrays)."""
        if not patches:
            return np.zeros(0)
        x = torch.from_numpy(np.stack(patches)).to(self.device).permute(0, 3, 1, 2).float()
        return self.net((x - 127.5) / 128.0).float().cpu().numpy().astype(np.float64)

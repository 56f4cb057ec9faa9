"""A small tree with Aff-Wild2's real layout, made in seconds (see make_tree)."""

import os

import numpy as np

from abawtools import demo, formats

LABELS = "EXPR_Recognition_Challenge"
TEMPLATE = "test_set_example.txt"


def make_tree(root, seed=0, train=("1-30-1280x720", "2-30-640x360", "pair-60_left", "pair-60_right"),
              val=("3-30-640x360", "4-25-640x360"), test=("5-30-640x360",), seconds=3.2):
    """root/
         videos/ID.mp4               H.264 + AAC; ID_left / ID_right share videos/ID.mp4
         cropped_aligned/ID/%05d.jpg 112x112 face crops: holes where there is no face, and the
                                     last 3-12 frames without a jpg (the annotation runs on)
         EXPR_Recognition_Challenge/{Train_Set,Validation_Set}/ID.txt   one label per video frame
         test_set_example.txt        the organisers' template: every test frame, crops or not
    """
    rng = np.random.default_rng(seed)
    face = demo.load_face()
    splits = {"Train_Set": train, "Validation_Set": val, None: test}
    made = {}
    template = [formats.SUBMISSION_HEADER]
    for split, ids in splits.items():
        for vid in ids:
            video = formats.shared_audio_id(vid)
            if video not in made:  # the pair's two faces come from one video
                frames = int(seconds * demo.FPS * rng.uniform(0.9, 1.1))
                made[video] = demo.make_labels(frames, rng)
                labels, faceless, _ = made[video]
                os.makedirs(os.path.join(root, "videos"), exist_ok=True)
                demo.write_clip(os.path.join(root, "videos", video + ".mp4"), labels, faceless, face, rng)
            labels, faceless, invalid = made[video]
            T = len(labels)
            crops = os.path.join(root, "cropped_aligned", vid)
            demo.write_crops(crops, labels, faceless, [demo.expression_overlay(face, c) for c in range(8)])
            holes = rng.choice(np.arange(1, T - 13), size=3, replace=False)  # a face missed here and there
            for t in [*holes, *range(T - int(rng.integers(3, 13)), T)]:  # the annotation runs past the last jpg
                path = os.path.join(crops, f"{t + 1:05d}.jpg")
                if os.path.exists(path):
                    os.unlink(path)
            if split:
                os.makedirs(os.path.join(root, LABELS, split), exist_ok=True)
                formats.write_labels(os.path.join(root, LABELS, split, vid + ".txt"), np.where(invalid, -1, labels))
            else:
                template += [f"{vid}/{t + 1:05d}.jpg," for t in range(T)]
    with open(os.path.join(root, TEMPLATE), "w") as fh:
        fh.write("\n".join(template) + "\n")
    return root

"""A small tree with Aff-Wild2's real layout, made in seconds (see make_tree)."""

import os

import numpy as np

from abawtools import demo, formats

LABELS = "EXPR_Recognition_Challenge"
TEMPLATE = "test_set_example.txt"
VA_LABELS, AU_LABELS = "VA_Estimation_Challenge", "AU_Detection_Challenge"
VA_TEMPLATE, AU_TEMPLATE = "va_test_set_example.txt", "au_test_set_example.txt"
# the planted signal of the VA and AU tracks: each expression (what the frames show) has a place
# in the valence-arousal plane and a set of active AUs, so the features carry the VA and AU labels
VA_OF_CLASS = np.array([[0.0, 0.0], [-0.6, 0.7], [-0.7, 0.3], [-0.5, 0.8], [0.8, 0.5], [-0.7, -0.4], [0.3, 0.9],
                        [0.1, -0.3]])
AU_OF_CLASS = np.array([[(c * 5 + i * 3) % 7 < 3 for i in range(12)] for c in range(8)], np.int64)


def va_au_labels(labels, invalid, rng):
    """The VA and AU annotation of a video from its expressions: VA the class's point plus slow
    noise, -5 where unannotated; AU the class's pattern with a few flips, -1 where invalid."""
    T = len(labels)
    drift = np.cumsum(rng.normal(0, 0.02, size=(T, 2)), axis=0)
    va = np.clip(VA_OF_CLASS[labels] + drift - drift.mean(axis=0), -1, 1)
    va[invalid] = -5
    au = AU_OF_CLASS[labels].copy()
    flip = rng.random(au.shape) < 0.03
    au[flip] = 1 - au[flip]
    au[invalid] = -1
    return va.astype(np.float32), au


def make_tree(root, seed=0, train=("1-30-1280x720", "2-30-640x360", "pair-60_left", "pair-60_right"),
              val=("3-30-640x360", "4-25-640x360"), test=("5-30-640x360",), seconds=3.2):
    """root/
         videos/ID.mp4               H.264 + AAC; ID_left / ID_right share videos/ID.mp4
         cropped_aligned/ID/%05d.jpg 112x112 face crops: holes where there is no face, and the
                                     last 3-12 frames without a jpg (the annotation runs on)
         EXPR_Recognition_Challenge/{Train_Set,Validation_Set}/ID.txt   one label per video frame
         VA_Estimation_Challenge/{Train_Set,Validation_Set}/ID.txt      valence,arousal per frame (-5)
         AU_Detection_Challenge/{Train_Set,Validation_Set}/ID.txt       12 AUs 0/1 per frame (-1)
         test_set_example.txt        the organisers' template: every test frame, crops or not
         va_test_set_example.txt, au_test_set_example.txt   the VA and AU tracks' templates
    The three tracks name different, overlapping videos, as the organisers' sets do: VA leaves
    out the training set's first video, AU its last, and VA's validation set has one video more
    (a training video of EXPR)."""
    rng = np.random.default_rng(seed)
    face = demo.load_face()
    splits = {"Train_Set": train, "Validation_Set": val, None: test}
    made = {}
    template = [formats.SUBMISSION_HEADER]
    templates = {VA_TEMPLATE: ["image_location,valence,arousal"],
                 AU_TEMPLATE: ["image_location," + ",".join(f"AU{n}" for n in (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26))]}
    tracks = {VA_LABELS: {"Train_Set": set(train[1:]), "Validation_Set": set(val) | {train[0]}},
              AU_LABELS: {"Train_Set": set(train[:-1]), "Validation_Set": set(val)}}
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
            va, au = va_au_labels(labels, invalid, np.random.default_rng([seed, T]))
            if split:
                os.makedirs(os.path.join(root, LABELS, split), exist_ok=True)
                formats.write_labels(os.path.join(root, LABELS, split, vid + ".txt"), np.where(invalid, -1, labels))
            else:
                template += [f"{vid}/{t + 1:05d}.jpg," for t in range(T)]
                templates[VA_TEMPLATE] += [f"{vid}/{t + 1:05d}.jpg,," for t in range(T)]
                templates[AU_TEMPLATE] += [f"{vid}/{t + 1:05d}.jpg" + "," * 12 for t in range(T)]
            for track, values in ((VA_LABELS, va), (AU_LABELS, au)):
                for where, members in tracks[track].items():
                    if vid in members:
                        os.makedirs(os.path.join(root, track, where), exist_ok=True)
                        formats.write_labels(os.path.join(root, track, where, vid + ".txt"), values)
    with open(os.path.join(root, TEMPLATE), "w") as fh:
        fh.write("\n".join(template) + "\n")
    for name, rows in templates.items():
        with open(os.path.join(root, name), "w") as fh:
            fh.write("\n".join(rows) + "\n")
    return root

"""A small tree with s-Aff-Wild2's layout (the multi-task challenge's data), made in seconds."""

import os

import numpy as np
from affwild2tree import va_au_labels

from abawtools import demo, tasks

TRAIN, VAL, TEST = "training_set_annotations.txt", "validation_set_annotations.txt", "MTL.txt"
HEADER = "image,valence,arousal,expression,aus"


def make_tree(root, seed=0, train=("10-30-1920x1080", "11-24-1280x720", "12_left", "12_right", "13-30-640x480"),
              val=("20-30-1280x720", "21-25-640x360"), test=("30-30-1280x720", "31-30-640x360"), frames=(150, 220)):
    """root/
         cropped_aligned/VIDEO/%05d.jpg   112x112 crops of the *selected* frames only: runs of
                                          frames with gaps between them on the video's timeline
         training_set_annotations.txt    image,valence,arousal,expression,aus; one line per
         validation_set_annotations.txt  selected frame, -5 / -1 where a task is not annotated
                                          (about a third of the frames carry all three), one
                                          line repeated exactly (as teams report)
         MTL.txt                          the test list: a line `image`, then `VIDEO/00001.jpg,` per test frame
    No videos and no audio, as the challenge ships it. The features carry the planted signal of
    the Aff-Wild2 tree (each expression has its VA point and AU pattern)."""
    rng = np.random.default_rng(seed)
    face = demo.load_face()
    overlays = [demo.expression_overlay(face, c) for c in range(8)]
    files = {TRAIN: [HEADER], VAL: [HEADER], TEST: ["image"]}
    truth = {}
    for name, ids in ((TRAIN, train), (VAL, val), (TEST, test)):
        for vid in ids:
            T = int(rng.integers(*frames))
            labels, _, invalid = demo.make_labels(T, rng)
            selected = np.zeros(T, bool)  # runs of 10-40 selected frames, gaps of 5-30 between them
            t = int(rng.integers(0, 10))
            while t < T:
                n = int(rng.integers(10, 40))
                selected[t : t + n] = True
                t += n + int(rng.integers(5, 30))
            selected[0] = True  # frame 1 listed: the timeline starts at 00001
            demo.write_crops(os.path.join(root, "cropped_aligned", vid), labels, ~selected, overlays)
            va, au = va_au_labels(labels, invalid, np.random.default_rng([seed, T]))
            expr = np.where(invalid, -1, labels).astype(np.float32)
            # each task annotated on its own frames: about a third carry all three
            va[rng.random(T) < 0.3] = -5
            expr[rng.random(T) < 0.3] = -1
            au[rng.random(T) < 0.3] = -1
            mtl = np.concatenate([va, expr[:, None], au.astype(np.float32)], axis=1)
            for t in np.flatnonzero(selected):
                if name == TEST:
                    files[name].append(f"{vid}/{t + 1:05d}.jpg,")
                else:
                    files[name].append(f"{vid}/{t + 1:05d}.jpg," + tasks.MTL.format_rows(mtl[t : t + 1])[0])
            truth[vid] = (mtl, selected)
    files[TRAIN].insert(5, files[TRAIN][4])  # an identical duplicate line
    for name, lines in files.items():
        with open(os.path.join(root, name), "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return root, truth

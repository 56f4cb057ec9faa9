"""Audio front end: decode to 16 kHz mono, then features at exactly 50 rows per second.

Decoding is in-process: PyAV (FFmpeg's libraries ship inside its wheel) for video containers,
soundfile for WAV/FLAC/OGG. Resampling: FFmpeg's swresample through PyAV, or
`scipy.signal.resample_poly` for soundfile input. torchaudio is deliberately not used (its last
wheel does not load with torch >= 2.12, see README).

Row i of every feature matrix covers samples [320 i, 320 i + 400): a 25 ms window every 20 ms,
the framing of WavLM / HuBERT / wav2vec2's convolutional front end, so rows = (N - 400) // 320 + 1.
"""

import math
import os

import numpy as np

from abawtools.errors import AbawError
from abawtools.hf import load_pretrained, preprocessor_config

SAMPLE_RATE = 16000
HOP = 320  # 20 ms at 16 kHz -> 50 rows per second
WIN = 400  # 25 ms
SOUNDFILE_EXTS = (".wav", ".flac", ".ogg", ".aiff", ".aif")


def num_rows(samples):
    return max(0, (samples - WIN) // HOP + 1)


# ----------------------------------------------------------------------------- decoding
def load_audio(path):
    """Mono float32 waveform at 16 kHz from an audio file or the audio track of a video."""
    if not os.path.exists(path):
        raise AbawError(f"{path}: no such file")
    if path.lower().endswith(SOUNDFILE_EXTS):
        return _load_soundfile(path)
    return _load_with_pyav(path)


def _load_soundfile(path):
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        wav, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AbawError(f"{path}: cannot read audio ({exc})") from None
    wav = wav.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = math.gcd(int(rate), SAMPLE_RATE)
        wav = resample_poly(wav, SAMPLE_RATE // g, int(rate) // g).astype(np.float32)
    return np.ascontiguousarray(wav, dtype=np.float32)


def _load_with_pyav(path):
    import av

    try:
        container = av.open(path)
    except Exception as exc:
        raise AbawError(f"{path}: cannot open ({exc})") from None
    with container:
        if not container.streams.audio:
            raise AbawError(f"{path}: no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise AbawError(f"{path}: audio decoding failed ({exc})") from None
    if not chunks:
        raise AbawError(f"{path}: the audio track is empty")
    return np.concatenate(chunks).astype(np.float32)


# --------------------------------------------------------------------------- filterbank
def mel_filterbank(n_mels=80, n_fft=512, rate=SAMPLE_RATE, fmin=20.0, fmax=None):
    """Triangular filters on the HTK mel scale, shape (n_mels, n_fft // 2 + 1)."""
    fmax = fmax or rate / 2

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (bins - lower) / (center - lower)
    fall = (upper - bins) / (upper - center)
    return np.maximum(0.0, np.minimum(rise, fall))


def log_mel(wav, n_mels=80, n_fft=512, block=20000):
    """80-bin log-mel filterbank, one row per 20 ms (25 ms Hann window), float32 (rows, n_mels)."""
    rows = num_rows(len(wav))
    if rows == 0:
        return np.zeros((0, n_mels), np.float32)
    fb = mel_filterbank(n_mels, n_fft).T.astype(np.float32)
    window = np.hanning(WIN + 1)[:-1].astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(wav, WIN)[::HOP][:rows]
    out = np.empty((rows, n_mels), np.float32)
    for lo in range(0, rows, block):  # bounded memory on long recordings
        spec = np.abs(np.fft.rfft(frames[lo : lo + block] * window, n=n_fft)) ** 2
        out[lo : lo + block] = np.log(spec.astype(np.float32) @ fb + 1e-6)
    return out


# -------------------------------------------------------------------- speech SSL models
class SpeechModel:
    """Any Hugging Face speech SSL model (WavLM, HuBERT, wav2vec2): final hidden layer, 50 rows/s.

    `name` is a local folder or a hub id (`from_pretrained`, never trust_remote_code).
    """

    def __init__(self, name, device="cpu", dtype=None):
        import torch

        self.name = name
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = load_pretrained(name, "speech", self.device, dtype)
        self.normalize = _wants_normalised_input(name)

    def __call__(self, wav):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None].to(self.device)
        if self.dtype is not None:
            x = x.to(self.dtype)
        from abawtools import runtime

        with torch.no_grad():
            feats = self.model(x).last_hidden_state[0].float().cpu().numpy()
        return runtime.finite_output(feats, self.name, "audio rows", self.dtype)


def _wants_normalised_input(name):
    """The feature extractor's do_normalize (zero mean, unit variance over the utterance)."""
    return bool(preprocessor_config(name).get("do_normalize", True))


def chunked_features(wav, model_fn, chunk_seconds=30.0, context_seconds=2.0, progress=None):
    """Features of a long waveform computed in overlapping chunks, with no seams.

    Chunks start at multiples of the 320-sample hop, so each chunk's rows fall exactly on the
    global 50/s grid; each chunk sees `context_seconds` of extra audio on both sides and only
    its own rows are kept. With context at least the model's receptive field the result equals a
    single pass; for a transformer it is a close approximation, 30 min of audio fitting in memory.
    """
    total = num_rows(len(wav))
    if total == 0:
        raise AbawError(f"audio is {len(wav) / SAMPLE_RATE:.3f} s long: too short for one 25 ms frame")
    chunk_rows = max(1, int(chunk_seconds * SAMPLE_RATE) // HOP)
    ctx_rows = int(context_seconds * SAMPLE_RATE) // HOP
    parts = []
    for r0 in range(0, total, chunk_rows):
        r1 = min(r0 + chunk_rows, total)
        c0 = max(0, r0 - ctx_rows)
        c1 = min(total, r1 + ctx_rows)
        segment = wav[c0 * HOP : (c1 - 1) * HOP + WIN]
        feats = model_fn(segment)
        if len(feats) != c1 - c0:
            raise RuntimeError(f"model gave {len(feats)} rows for {c1 - c0} expected: not a 20 ms-hop model?")
        parts.append(feats[r0 - c0 : r1 - c0])
        if progress:
            progress(r1 - r0)
    return np.concatenate(parts).astype(np.float32)


def extract(path, model=None, chunk_seconds=30.0, context_seconds=2.0, progress=None):
    """(Ta, D) float32 at 50 rows/s for one file: log-mel by default, else a SpeechModel."""
    wav = load_audio(path)
    if not np.isfinite(wav).all():
        raise AbawError(f"{path}: the audio has NaN or Inf samples")
    if num_rows(len(wav)) == 0:
        raise AbawError(f"{path}: {len(wav)} samples at 16 kHz, shorter than one 25 ms feature frame ({WIN})")
    if model is None:
        feats = log_mel(wav)
        if progress:
            progress(len(feats))
        return feats
    if model.normalize:
        wav = (wav - wav.mean()) / np.sqrt(wav.var() + 1e-7)
    return chunked_features(wav, model, chunk_seconds, context_seconds, progress)

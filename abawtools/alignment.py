"""Put audio features (50 rows/s) on the video's frame grid by linear interpolation (paper §4.2)."""

import numpy as np

AUDIO_RATE = 50.0  # feature rows per second: a 20 ms hop at 16 kHz


def _lerp(audio, pos):
    """Rows of `audio` at fractional positions `pos` (clipped to the ends), in float32."""
    audio = np.asarray(audio)
    n = len(audio)
    pos = np.clip(pos, 0, n - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0).astype(np.float32)[:, None]
    a0 = audio[i0].astype(np.float32)
    a1 = audio[i1].astype(np.float32)
    # a row of NaN (missing) stays missing only where it carries weight
    out = a0 * (1 - w) + a1 * w
    exact = w[:, 0] == 0
    out[exact] = a0[exact]
    return out


def stretch(audio, frames):
    """The paper's alignment: the audio's whole duration is stretched onto `frames` rows."""
    if frames < 0:
        raise ValueError("frame count must be >= 0")
    if len(audio) == 0:
        raise ValueError("audio features have no rows")
    if frames == 0:
        return np.zeros((0,) + audio.shape[1:], np.float32)
    pos = np.linspace(0, len(audio) - 1, frames) if frames > 1 else np.zeros(1)
    return _lerp(audio, pos)


def at_fps(audio, frames, fps, rate=AUDIO_RATE):
    """Frame t sits at time t / fps; returns (aligned, number of frames past the audio's end)."""
    if fps <= 0:
        raise ValueError("--fps must be positive")
    if len(audio) == 0:
        raise ValueError("audio features have no rows")
    pos = np.arange(frames, dtype=np.float64) * (rate / fps)
    held = int((pos > len(audio) - 1).sum())
    return _lerp(audio, pos), held

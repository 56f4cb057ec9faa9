"""abaw extract-audio: videos or audio files -> audio features at 50 rows per second."""

import click

from abawtools.commands import _common


@click.command(name="extract-audio")
@click.argument("inputs", nargs=-1, required=True, metavar="VIDEO|AUDIO...")
@_common.per_video_output_option
@click.option("--model", default="fbank", show_default=True, metavar="NAME|DIR|fbank",
              help="A Hugging Face speech SSL model (WavLM, HuBERT, wav2vec2; local folder or hub id), "
              "or the weight-free 80-bin log-mel filterbank.")
@click.option("--chunk-seconds", default=30.0, show_default=True, type=_common.Finite(min=0.1),
              help="Model input length; chunks overlap by --context-seconds on each side.")
@click.option("--context-seconds", default=2.0, show_default=True, type=_common.Finite(min=0))
@click.option("--device", default="auto", show_default=True)
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True)
@_common.shard_option
@_common.skip_existing_option
def cli(inputs, output, model, chunk_seconds, context_seconds, device, dtype, shard, skip_existing):
    """Decode the audio track, resample to 16 kHz mono, and compute features at 50 rows/s.

    Videos are demuxed in-process with PyAV; WAV/FLAC with soundfile. Row i covers 25 ms from
    20 ms x i. Then `abaw align` puts the rows on the video's frames. A video with no audio
    track is an error (for inference, leave --audio out instead).

    \b
    Examples:
      abaw extract-audio clip.mp4 -o audio50/clip.npy
      abaw extract-audio videos/*.mp4 --model ./wavlm-large --device cuda -o audio50/ --skip-existing
      abaw extract-audio talk.wav | abaw align - --frames 7500 --fps 25 > audio/talk.npy
    """
    from abawtools import audio, formats

    if "-" in inputs:
        raise click.UsageError("reads files only (media cannot be decoded from a pipe here): give the path")
    plan = _common.plan_outputs(inputs, output, ".npy")
    plan = _common.work_for_this_task(plan, shard, skip_existing, lambda item: _size(item[0]))
    if not plan:
        return
    speech = None
    if model != "fbank":
        from abawtools.runtime import pick_device, torch_dtype

        speech = audio.SpeechModel(model, pick_device(device), torch_dtype(dtype))
    for path, out in plan:
        bar = _common.Progress(0, f"extract-audio {formats.video_id(path)}", unit="rows")
        feats = audio.extract(path, speech, chunk_seconds, context_seconds, bar.update)
        bar.close()
        formats.write_npy(out, feats)


def _size(path):
    import os

    try:
        return os.path.getsize(path)
    except OSError:
        return 1

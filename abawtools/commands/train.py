"""abaw train: window manifests -> one .safetensors model."""

import click

from abawtools.commands import _common


@click.command(name="train")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--val", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Validation manifest: each epoch is scored (soft voting + smoothing + pooled F1), the best kept.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), metavar="MODEL.safetensors")
@click.option("--arch", type=click.Choice(["dual", "baseline"]), default="dual", show_default=True,
              help="dual: the paper's network; baseline: the two-stream MLP of §4.3.")
@click.option("--d-model", default=256, show_default=True, type=click.IntRange(min=8))
@click.option("--layers", default=3, show_default=True, type=click.IntRange(min=0), help="Self-attention layers per branch.")
@click.option("--heads", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--dropout", default=0.1, show_default=True, type=_common.Finite(0, 1))
@click.option("--modality-dropout", default=0.1, show_default=True, type=_common.Finite(0, 1),
              help="p: probability that a training window loses its whole visual stream.")
@click.option("--cross-ffn/--no-cross-ffn", default=True, show_default=True,
              help="Cross-attention blocks end with a feed-forward sublayer (authors' model.py; "
              "--no-cross-ffn: abawtools 0.1).")
@click.option("--gate", type=click.Choice(["frame", "channel"]), default="frame", show_default=True,
              help="Eq. 4's gate: one value per frame (authors') or per channel (abawtools 0.1).")
@click.option("--zero-faceless/--no-zero-faceless", default=True, show_default=True,
              help="Set the fused visual stream to 0 at frames without a face (authors').")
@click.option("--activation", type=click.Choice(["relu", "gelu"]), default="relu", show_default=True,
              help="Self-attention layers' feed-forward (relu: torch's TransformerEncoderLayer, authors').")
@click.option("--lambda", "fusion_lambda", default=0.7, show_default=True, type=_common.Finite(0, 1),
              help="Baseline: visual weight of the decision fusion.")
@click.option("--audio-context", default=18, show_default=True, type=click.IntRange(min=0),
              help="Baseline: audio of a frame = mean over +-N frames.")
@click.option("--gamma", default=2.0, show_default=True, type=_common.Finite(min=0),
              help="Focal loss focusing parameter (§3.5).")
@click.option("--beta", default=0.9999, show_default=True, type=_common.Finite(0, 1, max_open=True),
              help="Effective-number beta for class weights (§4.4; 0.9999 as in Cui et al. 2019).")
@click.option("--no-class-weights", is_flag=True, help="Plain focal loss, no class weights.")
@click.option("--task-weights", default="1,1,1", show_default=True, metavar="VA,EXPR,AU",
              help="Multi-task: the weights of the three masked losses in their sum (equal: the organisers' "
              "multi-task baseline; docs/multitask.md).")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1),
              help="Authors' train.py (the paper gives none).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Windows per micro-batch (global; §4.4 / authors' train.py).")
@click.option("--accumulate", default=2, show_default=True, type=click.IntRange(min=1),
              help="Micro-batches per optimizer step: 32 x 2 = 64 windows per update (authors' train.py).")
@click.option("--lr", default=2.4e-5, show_default=True, type=_common.Finite(min=0, min_open=True),
              help="Peak AdamW learning rate (authors' train.py).")
@click.option("--weight-decay", default=0.03, show_default=True, type=_common.Finite(min=0),
              help="AdamW weight decay (authors' train.py).")
@click.option("--warmup", default=0.1, show_default=True, type=_common.Finite(0, 1),
              help="Share of steps for linear warmup before the cosine decay (authors' train.py).")
@click.option("-k", "--kernel", "smooth_k", default=11, show_default=True, type=int,
              help="Validation: the median kernel of `abaw smooth -k` (§3.6).")
@click.option("--smooth-k", "smooth_k_old", type=int, default=None, hidden=True)
@_common.run_options(patience=0, checkpoint_every=0)
def cli(manifest, val, output, arch, d_model, layers, heads, dropout, modality_dropout, cross_ffn, gate,
        zero_faceless, activation, fusion_lambda,
        audio_context, gamma, beta, no_class_weights, task_weights, epochs, batch_size, accumulate, lr, weight_decay, warmup,
        patience, checkpoint_every, seed,
        smooth_k, smooth_k_old, device, dtype, no_bf16, resume_dir, threads, stop_after_steps):
    """Train the dual-branch network (or the MLP baseline) on windows cut on the fly.

    Focal loss (gamma) with effective-number class weights (beta), AdamW with warmup and cosine
    decay, visual modality dropout, bf16 autocast on CUDA. A checkpoint is written after every
    epoch to the --resume folder; on SIGTERM or SIGUSR1 (SLURM's warning before it stops or
    requeues a job) one is written at once and the command exits with status 75: running the
    same command again continues exactly where it stopped. Several GPUs or processes:
    `torchrun --nproc-per-node N -m abawtools train ...`.

    \b
    Examples:
      abaw train train.csv --val val.csv -o model.safetensors
      abaw train train.csv -o base.safetensors --arch baseline --lambda 0.7
      abaw train train.csv -o m.safetensors --modality-dropout 0.15 --d-model 512 --layers 2 --seed 3
    """
    import sys

    import torch

    from abawtools import windows
    from abawtools.commands._common import log
    from abawtools.engine import EXIT_PREEMPTED, Preempted
    from abawtools.errors import AbawError
    from abawtools.model import ModelConfig, save_model
    from abawtools.smoothing import check_kernel
    from abawtools.training import TrainOptions, train

    smooth_k = smooth_k_old or smooth_k  # --smooth-k: the name before 0.2
    try:
        check_kernel(smooth_k)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--kernel") from None
    if d_model % heads:
        raise click.BadParameter(f"--d-model {d_model} must be divisible by --heads {heads}", param_hint="--d-model")
    try:
        shares = tuple(float(w) for w in task_weights.split(","))
    except ValueError:
        shares = ()
    if len(shares) != 3 or not all(0 <= w < float("inf") for w in shares) or not any(shares):
        raise click.BadParameter(f"{task_weights!r}: three weights >= 0 (VA, EXPR, AU), not all 0",
                                 param_hint="--task-weights")
    if threads:
        torch.set_num_threads(threads)
    from abawtools.commands._common import check_output_dir

    check_output_dir(output)  # before an epoch of work, not after it
    rows = windows.read_manifest(manifest)
    val_rows = windows.read_manifest(val) if val else None
    from abawtools.formats import check_not_input

    check_not_input([output], [manifest, val, *{r[k] for r in rows + (val_rows or []) for k in ("visual", "audio")}])
    W = rows[0]["stop"] - rows[0]["start"]
    cfg = ModelConfig(arch=arch, d_model=d_model, layers=layers, heads=heads, dropout=dropout,
                      modality_dropout=modality_dropout, window=W, stride=_stride(rows, W),
                      fusion_lambda=fusion_lambda, audio_context=audio_context if arch == "baseline" else 0,
                      cross_ffn=cross_ffn, gate=gate, zero_faceless=zero_faceless, activation=activation)
    opts = TrainOptions(epochs=epochs, batch_size=batch_size, accumulate=accumulate, lr=lr,
                        weight_decay=weight_decay, warmup=warmup, gamma=gamma, beta=beta,
                        class_weights=not no_class_weights, task_weights=shares, seed=seed, smooth_k=smooth_k, device=device,
                        dtype="fp32" if no_bf16 else dtype, patience=patience, checkpoint_every=checkpoint_every)
    checkpoint_dir = resume_dir or output + ".ckpt"
    try:
        model, summary, rank = train(rows, cfg, opts, checkpoint_dir, val_rows, log=log,
                                     stop_after_steps=stop_after_steps)
    except Preempted as why:
        log(f"abaw train: stopped ({why}); checkpoint in {checkpoint_dir}. "
            f"Run the same command with --resume {checkpoint_dir} to continue.")
        sys.exit(EXIT_PREEMPTED)
    except ValueError as exc:
        raise AbawError(str(exc)) from None
    if rank == 0:
        save_model(output, model, extra={"training": summary, "manifest": manifest})
        best = summary["best"]
        from abawtools.engine import score_name, val_score

        log(f"wrote {output}" + (f" (best epoch {best['epoch']}, val {score_name(best)} {val_score(best):.4f})"
                                 if best else ""))


def _stride(rows, W):
    """The stride the manifest was made with: the commonest step between a video's windows."""
    from collections import Counter

    by_video = {}
    for r in rows:
        by_video.setdefault(r["video"], []).append(r["start"])
    steps = Counter(b - a for starts in by_video.values() for a, b in zip(sorted(starts), sorted(starts)[1:]))
    return steps.most_common(1)[0][0] if steps else max(1, W // 8)

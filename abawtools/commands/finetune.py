"""abaw finetune: labelled face images -> a fine-tuned vision backbone folder (paper §3.2, §4.1)."""

import click

from abawtools.commands import _common

_SOURCES = "Give at least one of --images, --rafdb, --ferplus, --affectnet, --affwild2, --annotations."


@click.command(name="finetune")
@click.option("--model", "base", required=True, metavar="NAME|DIR",
              help="Hugging Face vision backbone: hub id or local folder (BEiT, ViT, ViT-MAE, DINOv2, ResNet, "
              "ConvNeXt, EfficientNet, ...), or a folder written by a previous finetune (stage 2 from stage 1).")
@click.option("-o", "--output", required=True, metavar="DIR/", help="Output folder (replaced when the run ends).")
@click.option("--images", multiple=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="One sub-folder per class (neutral/, angry/, happy/, ...); contempt/unknown left out.")
@click.option("--rafdb", multiple=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="RAF-DB basic (EmoLabel/list_patition_label.txt; train_* images).")
@click.option("--ferplus", multiple=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="FERPlus: DIR/label.csv or DIR/FER2013Train/label.csv (labels by --ferplus-rule).")
@click.option("--ferplus-rule", type=click.Choice(["majority", "plurality"]), default="majority", show_default=True,
              help="majority: microsoft/FERPlus's own rule (single votes removed, then more than half of the rest; "
              "else left out); plurality: the most votes, ties left out (abawtools 0.2.0).")
@click.option("--affectnet", multiple=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="AffectNet: DIR/training.csv, images in DIR/Manually_Annotated_Images/ (expressions 0-6).")
@click.option("--affectnet-precropped", is_flag=True, help="AffectNet images are face crops already: no face box.")
@click.option("--affwild2", nargs=2, multiple=True, type=click.Path(exists=True, file_okay=False),
              metavar="CROPPED_ALIGNED LABEL_DIR", help="Aff-Wild2 frames with their labels: EXPR (8 classes), or "
              "VA / AU (a regression head trained with 1 - CCC, or 12 sigmoid outputs with BCE): the header says.")
@click.option("--annotations", nargs=2, multiple=True, type=click.Path(exists=True), metavar="CROPPED_ALIGNED FILE",
              help="s-Aff-Wild2 (the multi-task challenge): its crops and an annotation file "
              "(image,valence,arousal,expression,aus): three heads (2 tanh values, 8 logits, 12 logits) with "
              "masked losses, each task over its own annotated frames.")
@click.option("--val-annotations", nargs=2, multiple=True, type=click.Path(exists=True),
              metavar="CROPPED_ALIGNED FILE", help="s-Aff-Wild2 validation, scored each epoch by P_MTL.")
@click.option("--every", default=1, show_default=True, type=click.IntRange(min=1),
              help="Aff-Wild2: keep every N-th labelled frame of a video.")
@click.option("--val", nargs=2, multiple=True, type=click.Path(exists=True, file_okay=False),
              metavar="CROPPED_ALIGNED LABEL_DIR",
              help="Aff-Wild2 validation, scored each epoch as the challenge does (all labelled frames, pooled).")
@click.option("--val-images", multiple=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="Static validation (stage 1): one sub-folder per class, as --images; scored per image.")
@click.option("--val-rafdb", multiple=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="Static validation (stage 1): RAF-DB basic's test_* images.")
@click.option("--epochs", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Images per micro-batch.")
@click.option("--accumulate", default=8, show_default=True, type=click.IntRange(min=1),
              help="Micro-batches per optimizer step.")
@click.option("--lr", default=4e-5, show_default=True, type=_common.Finite(min=0, min_open=True),
              help="Backbone learning rate.")
@click.option("--head-lr-mult", default=20.0, show_default=True, type=_common.Finite(min=0, min_open=True),
              help="Head learning rate = lr x this.")
@click.option("--layer-decay", default=1.0, show_default=True, type=_common.Finite(0, 1, min_open=True),
              help="Layer-wise lr decay for transformer backbones (BEiT's fine-tuning recipe; e.g. 0.75). 1: off.")
@click.option("--weight-decay", default=1e-4, show_default=True, type=_common.Finite(min=0))
@click.option("--head-weight-decay", default=0.01, show_default=True, type=_common.Finite(min=0))
@click.option("--warmup", default=0.0, show_default=True, type=_common.Finite(0, 1),
              help="Share of steps for linear warmup before the cosine decay.")
@click.option("--loss", "loss_name", type=click.Choice(["focal", "ce"]), default="focal", show_default=True)
@click.option("--gamma", default=2.0, show_default=True, type=_common.Finite(min=0), help="Focal loss gamma.")
@click.option("--label-smoothing", default=0.0, show_default=True, type=_common.Finite(0, 1, max_open=True),
              help="With --loss ce.")
@click.option("--class-weights", type=click.Choice(["inverse-sqrt", "effective", "none"]), default="inverse-sqrt",
              show_default=True, help="1/sqrt(count) (authors), effective number (loss.py, --beta), or none.")
@click.option("--beta", default=0.9999, show_default=True, type=_common.Finite(0, 1, max_open=True))
@click.option("--balanced-sampling", is_flag=True, help="Draw every class equally often (with replacement).")
@click.option("--no-flip", is_flag=True, help="No random horizontal flip.")
@click.option("--crop-scale", default=1.0, show_default=True, type=_common.Finite(0.05, 1),
              help="Random resized crop: smallest share of the area kept (1: off).")
@click.option("--jitter", default=0.0, show_default=True, type=_common.Finite(0, 1),
              help="Colour jitter strength (brightness, contrast, saturation).")
@click.option("--grayscale", default=0.0, show_default=True, type=_common.Finite(0, 1),
              help="Probability of a grey image (the authors' stage 1 used 0.3).")
@click.option("--image-size", default=0, type=click.IntRange(min=0), help="Input side (default: the model's).")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(min=0),
              help="DataLoader processes that decode and resize images.")
@_common.run_options(patience=10, checkpoint_every=500)
def cli(base, output, images, rafdb, ferplus, ferplus_rule, affectnet, affectnet_precropped, affwild2, annotations,
        val_annotations, every, val, val_images,
        val_rafdb, epochs,
        batch_size, accumulate, lr, head_lr_mult, layer_decay, weight_decay, head_weight_decay, warmup, loss_name,
        gamma, label_smoothing, class_weights, beta, balanced_sampling, no_flip, crop_scale, jitter, grayscale,
        image_size, seed, device, dtype, no_bf16, patience, checkpoint_every, workers, resume_dir, threads,
        stop_after_steps):
    """Fine-tune a vision backbone with a linear head on the feature extract-visual extracts.

    The paper's two stages (§3.2, §4.1): first on static expression data (RAF-DB, FERPlus,
    AffectNet: 7 classes), then on Aff-Wild2's own frames (8 classes; the head is rebuilt). The
    output folder is a model for `extract-visual --model DIR` (features, or `--logits`) and for a
    next `finetune --model DIR`. Checkpoints every --checkpoint-every steps and on SIGTERM/SIGUSR1
    (exit 75); the same command again continues exactly. Defaults: the authors'
    trainer/affwild2-ft.py where the paper is silent (see README).

    \b
    Examples:
      abaw finetune --model microsoft/beit-large-patch16-224-pt22k -o beit-static/ \\
          --rafdb RAF-DB/basic --ferplus FERPlus/ --affectnet AffectNet/ --images more/ --val-rafdb RAF-DB/basic
      abaw finetune --model beit-static/ -o beit-affwild2/ --every 5 \\
          --affwild2 cropped_aligned/ EXPR_Recognition_Challenge/Train_Set \\
          --val cropped_aligned/ EXPR_Recognition_Challenge/Validation_Set
      abaw extract-visual cropped_aligned/* --no-detect --model beit-affwild2/ -o visual/
      abaw extract-visual cropped_aligned/* --no-detect --model beit-affwild2/ --logits -o vlogits/
    """
    import sys

    import numpy as np

    from abawtools import CLASSES
    from abawtools.commands._common import check_output_dir, log
    from abawtools.engine import EXIT_PREEMPTED, Preempted

    if not (images or rafdb or ferplus or affectnet or affwild2 or annotations):
        raise click.UsageError(_SOURCES)
    affwild2, val = _with_annotations(affwild2, annotations), _with_annotations(val, val_annotations)
    if label_smoothing and loss_name != "ce":
        raise click.BadParameter("label smoothing needs --loss ce", param_hint="--label-smoothing")
    if val and (val_images or val_rafdb):
        raise click.UsageError("validate on Aff-Wild2 (--val, scored per video as the challenge does) or on still "
                               "images (--val-images, --val-rafdb), not both")
    if patience and not (val or val_images or val_rafdb):
        patience = 0  # nothing to stop on
    output = output.rstrip("/") or output
    check_output_dir(output)
    from abawtools import formats
    from abawtools.finetuning import LEGACY_OUTPUT, OUTPUT_KIND

    inputs = [base, *images, *rafdb, *ferplus, *affectnet, *val_images, *val_rafdb,
              *(p for pair in affwild2 + val for p in pair[-2:])]
    formats.check_replaceable(output, OUTPUT_KIND, inputs, LEGACY_OUTPUT)  # before hours of training
    _check_image_size(base, image_size)
    parts, val_parts = _sources(images, rafdb, ferplus, ferplus_rule, affectnet, affectnet_precropped, affwild2,
                                every, val, val_images, val_rafdb)
    roles = [(p, "train") for p in parts] + [(p, "val") for p in val_parts]

    import torch

    from abawtools.finetuning import FinetuneOptions, finetune, save_finetuned

    if threads:
        torch.set_num_threads(threads)
    opts = FinetuneOptions(epochs=epochs, batch_size=batch_size, accumulate=accumulate, lr=lr,
                           head_lr_mult=head_lr_mult, layer_decay=layer_decay, weight_decay=weight_decay,
                           head_weight_decay=head_weight_decay, warmup=warmup, loss=loss_name, gamma=gamma,
                           label_smoothing=label_smoothing, class_weights=class_weights, beta=beta,
                           balanced_sampling=balanced_sampling, flip=not no_flip, crop_scale=crop_scale,
                           jitter=jitter, grayscale=grayscale, image_size=image_size, seed=seed, device=device,
                           dtype="fp32" if no_bf16 else dtype, patience=patience, checkpoint_every=checkpoint_every, workers=workers)
    checkpoint_dir = resume_dir or output + ".ckpt"
    try:
        model, summary, rank, job = finetune(base, parts, opts, checkpoint_dir, val_parts, log=log,
                                             stop_after_steps=stop_after_steps)
    except Preempted as why:
        log(f"abaw finetune: stopped ({why}); checkpoint in {checkpoint_dir}. Run the same command to continue.")
        sys.exit(EXIT_PREEMPTED)
    if rank != 0:
        return
    line = job.task.describe_counts(job.counts) if job.task.name != "expr" else (
        "class counts: " + ", ".join(f"{c}={n}" for c, n in zip(job.classes, job.counts)))
    if line:
        log(line.replace(" in training windows", ""))
    record = {
        "base_model": base,
        "classes": job.classes,
        "sources": [{"name": p.name, "role": role, "images": len(p),
                     "class_counts": dict(zip(CLASSES, map(int, p.counts()))) if p.task.name == "expr" else {},
                     "task": p.task.name, "left_out": dict(p.dropped)}
                    for p, role in roles],
        "training": summary,
    }
    prior = job.prior()
    save_finetuned(output, model, job.spec, base, job.classes, np.asarray(prior), record, inputs)
    best = summary["best"]
    from abawtools.engine import score_name, val_score

    log(f"wrote {output}/" + (f" (best epoch {best['epoch']}, val {score_name(best)} {val_score(best):.4f}"
                              + (f", accuracy {best['val_accuracy']:.4f})" if "val_accuracy" in best else ")")
                              if best else ""))


def _check_image_size(base, image_size):
    """--image-size below the model's patch: a usage error before any image is read (exit 2)."""
    if not image_size:
        return
    from abawtools.backbones import _load_config, patch_size

    patch = patch_size(_load_config(base))
    if image_size < patch:
        raise click.BadParameter(f"{image_size} is smaller than the model's {patch}-pixel patch",
                                 param_hint="--image-size")


def _with_annotations(pairs, annotation_pairs):
    """Aff-Wild2 (CROPS, LABEL_DIR) pairs, then s-Aff-Wild2's as ("annotations", CROPS, FILE)."""
    return tuple(pairs) + tuple(("annotations", *pair) for pair in annotation_pairs)


def _sources(images, rafdb, ferplus, ferplus_rule, affectnet, affectnet_precropped, affwild2, every, val,
             val_images, val_rafdb):
    """(training parts, validation parts) as ImageIndex each, their counts, what each leaves out
    and every warning said on stderr."""
    from abawtools import CLASSES, imagesets
    from abawtools.commands._common import log
    from abawtools.errors import few

    parts = [imagesets.image_folder(d) for d in images]
    parts += [imagesets.rafdb(d) for d in rafdb]
    parts += [imagesets.ferplus(d, ferplus_rule) for d in ferplus]
    parts += [imagesets.affectnet(d, affectnet_precropped) for d in affectnet]
    parts += [imagesets.saffwild2(*pair[1:], every) if len(pair) == 3 else imagesets.affwild2(*pair, every)
              for pair in affwild2]
    val_parts = [imagesets.saffwild2(*pair[1:], validation=True) if len(pair) == 3 else
                 imagesets.affwild2(*pair, validation=True) for pair in val]
    val_parts += [imagesets.image_folder(d) for d in val_images]
    val_parts += [imagesets.rafdb(d, split="test") for d in val_rafdb]
    overlap = imagesets.shared(parts, val_parts)
    if overlap:
        log(f"warning: validation shares {len(overlap)} video(s) or image(s) with training ({few(overlap, 3)}): "
            "the validation score is not held out")
    for part, role in [(p, "train") for p in parts] + [(p, "val") for p in val_parts]:
        kept = (", ".join(f"{c}={n}" for c, n in zip(CLASSES, part.counts()) if n) if part.task.name == "expr"
                else part.task.title)
        dropped = ""
        if part.dropped:  # a val source leaves nothing out: its notes are how frames are scored
            dropped = ("; left out: " if role == "train" else "; ") + ", ".join(
                f"{k} {v}" for k, v in part.dropped.items())
        log(f"{role} {part.name}: {len(part)} images ({kept}){dropped}")
        for warning in part.warnings:
            log(f"warning: {warning}")
    return parts, val_parts

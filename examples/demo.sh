#!/usr/bin/env bash
# The one-command demo: every abaw tool end to end, offline, on clips this script makes.
#
#   bash examples/demo.sh [WORKDIR]        (default: ./demo-out)
#
# The clips are real H.264/AAC files built from one public-domain face photo; the "expressions"
# are simulated (a class-specific bar across the lower face, a class-specific tone), so the score
# shows that the plumbing works, not how well real emotions are recognised. See abawtools/demo.py.
set -euo pipefail
out=${1:-demo-out}
mkdir -p "$out"
cd "$out"

echo "== 1. make demo clips (python -m abawtools.demo)" >&2
[ -d cropped_aligned ] || python -m abawtools.demo . --train 6 --val 2 --seconds 10 --cropped-aligned

echo "== 1b. fine-tune a tiny random-initialised backbone on the clips' face crops, laid out as" >&2
echo "       Aff-Wild2's cropped_aligned (the paper's §3.2 stage 2; a real run starts from BEiT-large)" >&2
[ -d tiny-backbone ] || python -m abawtools.demo . --tiny-backbone tiny-backbone
[ -d backbone-ft ] || abaw finetune --model tiny-backbone -o backbone-ft/ --every 2 \
  --affwild2 cropped_aligned labels/train --val cropped_aligned labels/val \
  --epochs 6 --batch-size 32 --accumulate 1 --lr 3e-3 --head-lr-mult 1 --workers 0

for split in train val; do
  echo "== 2. extract features: $split" >&2
  abaw extract-visual videos/$split/*.mp4 -o feats/$split/visual/ --skip-existing
  abaw extract-audio  videos/$split/*.mp4 -o feats/$split/audio50/ --skip-existing
  echo "== 3. align audio rows onto video frames: $split" >&2
  abaw align feats/$split/audio50/*.npy --like-dir feats/$split/visual -o feats/$split/audio/ --skip-existing
  echo "== 4. index windows: $split" >&2
  # validation keeps every window (--max-invalid 1): train scores whole videos, the manifest names them
  if [ $split = val ]; then keep=1; else keep=0.25; fi
  abaw window --visual feats/$split/visual --audio feats/$split/audio --labels labels/$split \
    --max-invalid $keep -o $split.csv
done

echo "== 5. train (small model, a few epochs: it is a demo)" >&2
abaw train train.csv --val val.csv -o model.safetensors --epochs 15 --d-model 64 --layers 2 \
  --lr 1e-3 --batch-size 16 --accumulate 1 --resume model.ckpt

echo "== 6. infer + smooth on the validation clips" >&2
abaw infer -m model.safetensors --visual-dir feats/val/visual --audio-dir feats/val/audio -o logits
abaw smooth logits/*.npy -o pred/

echo "== 7. score (table on stdout, plots in report.png)" >&2
abaw score --pred-dir pred --label-dir labels/val --format table --plot report.png
echo "plots: $PWD/report.png" >&2

echo "== 8. the fine-tuned backbone alone, frame by frame (Table 1's measure): head logits -> score" >&2
abaw extract-visual cropped_aligned/val* --no-detect --model backbone-ft --logits --like-dir labels/val \
  -o vlogits/ --skip-existing
abaw score --pred-dir vlogits --label-dir labels/val --format table

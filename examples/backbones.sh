#!/usr/bin/env bash
# The paper's Table 1: fine-tune several backbones the same way and print frame-level accuracy and
# macro F1 of each on Aff-Wild2 validation (the head's logits, no smoothing), in the paper's layout.
#
#   bash examples/backbones.sh CROPPED_ALIGNED TRAIN_LABELS VAL_LABELS OUT BACKBONE... [-- finetune flags]
#   bash examples/backbones.sh cropped_aligned EXPR_Recognition_Challenge/Train_Set \
#       EXPR_Recognition_Challenge/Validation_Set table1 \
#       static/resnet-50 static/efficientnet-b7 static/vit-mae-base static/beit-large -- --every 5
# Each BACKBONE is a hub id or a local folder, e.g. the stage-1 (static data) folders that
# examples/finetune.sh writes; every flag after -- goes to `abaw finetune`.
set -euo pipefail
cropped=${1:?CROPPED_ALIGNED}; train=${2:?TRAIN_LABELS}; val=${3:?VAL_LABELS}; out=${4:?OUT}; shift 4
models=(); while [ $# -gt 0 ] && [ "$1" != "--" ]; do models+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
mkdir -p "$out"
dirs=(); for f in "$val"/*.txt; do id=$(basename "$f" .txt); [ -d "$cropped/$id" ] && dirs+=("$cropped/$id"); done
printf '%-40s %8s %8s\n' "Visual Backbone" Accuracy F1-Score
for m in "${models[@]}"; do
  name=$(basename "$m")
  [ -d "$out/$name" ] || abaw finetune --model "$m" -o "$out/$name/" --affwild2 "$cropped" "$train" \
    --val "$cropped" "$val" "$@" >&2
  abaw extract-visual "${dirs[@]}" --no-detect --model "$out/$name" --logits --like-dir "$val" \
    -o "$out/$name.logits/" --skip-existing 2>/dev/null
  abaw score --pred-dir "$out/$name.logits" --label-dir "$val" > "$out/$name.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('%-40s %8.4f %8.4f' % (sys.argv[2], r['accuracy'], r['macro_f1']))" \
    "$out/$name.json" "$name"
done

#!/usr/bin/env bash
# The paper's visual front end (§3.2, §4.1): fine-tune a backbone on static expression data, then
# on Aff-Wild2's frames, then extract features (for window/train) and logits (Table 1).
#
#   bash examples/finetune.sh BASE STATIC_FLAGS CROPPED_ALIGNED TRAIN_LABELS VAL_LABELS [OUT] [-- finetune flags]
#   bash examples/finetune.sh microsoft/beit-large-patch16-224-pt22k \
#       "--rafdb RAF-DB/basic --ferplus FERPlus --affectnet AffectNet --val-rafdb RAF-DB/basic" \
#       cropped_aligned EXPR_Recognition_Challenge/Train_Set EXPR_Recognition_Challenge/Validation_Set work
#
# A rerun skips what is done (a finished folder exists) and resumes what was interrupted.
set -euo pipefail
base=${1:?BASE model}; static=${2:-}; cropped=${3:?CROPPED_ALIGNED}; train=${4:?TRAIN_LABELS}; val=${5:?VAL_LABELS}
out=${6:-finetune-out}; shift $(( $# < 6 ? $# : 6 ))
[ "${1:-}" = "--" ] && shift
mkdir -p "$out"
stage2_from=$base
if [ -n "$static" ]; then
  # shellcheck disable=SC2086  # STATIC_FLAGS is a list of flags
  [ -d "$out/static" ] || abaw finetune --model "$base" -o "$out/static/" $static "$@"
  stage2_from=$out/static
fi
[ -d "$out/affwild2" ] || abaw finetune --model "$stage2_from" -o "$out/affwild2/" \
  --affwild2 "$cropped" "$train" --val "$cropped" "$val" "$@"
ids() { for f in "$1"/*.txt; do basename "$f" .txt; done; }
for split in "$train" "$val"; do
  dirs=(); for id in $(ids "$split"); do [ -d "$cropped/$id" ] && dirs+=("$cropped/$id"); done
  abaw extract-visual "${dirs[@]}" --no-detect --model "$out/affwild2" --like-dir "$split" -o "$out/visual/" --skip-existing
done
dirs=(); for id in $(ids "$val"); do [ -d "$cropped/$id" ] && dirs+=("$cropped/$id"); done
abaw extract-visual "${dirs[@]}" --no-detect --model "$out/affwild2" --logits --like-dir "$val" -o "$out/vlogits/" --skip-existing
abaw score --pred-dir "$out/vlogits" --label-dir "$val" --format table

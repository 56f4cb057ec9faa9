#!/usr/bin/env bash
# The authors' final test submission (final.py in Hathaway1027/abaw26-expr): three dual-branch
# models with d=128 and one self-attention layer, soft-voted with stride 4, their per-frame logits
# averaged with weights 0.3 / 0.3 / 0.4, a mean filter of 27 frames with replicated edges, argmax.
# (Their three members were three checkpoints of their own; here three seeds.)
#
#   bash examples/final.sh TRAIN.csv VAL.csv VISUAL_DIR AUDIO_DIR TEMPLATE [OUT] [-- abaw train flags]
#   bash examples/final.sh train.csv val.csv visual/ audio/ test_set_example.txt final
#
# Finished models are kept on a rerun; a stopped training resumes.
set -euo pipefail
train=${1:?TRAIN.csv}; val=${2:?VAL.csv}; visual=${3:?VISUAL_DIR}; audio=${4:?AUDIO_DIR}; template=${5:?TEMPLATE}
out=${6:-final}; shift $(( $# < 6 ? $# : 6 )); [ "${1:-}" = "--" ] && shift
mkdir -p "$out"
members=()
for seed in 1 2 3; do
  m=$out/member$seed.safetensors
  [ -f "$m" ] || abaw train "$train" --val "$val" -o "$m" --resume "$m.ckpt" --d-model 128 --layers 1 --seed $seed "$@"
  members+=(-m "$m")
done
abaw infer "${members[@]}" --weights 0.3,0.3,0.4 -S 4 --visual-dir "$visual" --audio-dir "$audio" \
  --like-template "$template" -o "$out/logits/" --skip-existing
abaw smooth "$out"/logits/*.npy --method mean -k 27 --format submission --template "$template" -o "$out/submission.csv"
echo "wrote $out/submission.csv" >&2

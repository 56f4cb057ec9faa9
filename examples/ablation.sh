#!/usr/bin/env bash
# The paper's ablations on your features: Table 3 (modality dropout p, width d, depth l of the
# dual-branch network) and Table 2 (fusion weight lambda of the two-stream MLP baseline).
#
#   bash examples/ablation.sh TRAIN.csv VAL.csv FEATS_DIR VAL_LABELS [OUT] [-- extra abaw train flags]
#
# FEATS_DIR holds visual/ and audio/ (aligned). Each setting is trained, then scored through the
# real path (infer -> smooth -> score on every validation video); finished settings are skipped
# on a rerun. Prints both tables in the paper's layout (Accuracy, F1-Score).
set -euo pipefail
shopt -s inherit_errexit  # a failed run inside $(...) stops the script too
train=${1:?TRAIN.csv}; val=${2:?VAL.csv}; feats=${3:?FEATS_DIR}; labels=${4:?VAL_LABELS}; out=${5:-ablation}
shift $(( $# < 5 ? $# : 5 )); [ "${1:-}" = "--" ] && shift
extra=("$@")
mkdir -p "$out"

run() {  # run TAG abaw-train-flags... -> prints "accuracy f1"
  local tag=$1; shift
  local model=$out/$tag.safetensors
  [ -f "$model" ] || abaw train "$train" --val "$val" -o "$model" --resume "$model.ckpt" "$@" "${extra[@]}" >&2
  [ -f "$out/$tag.json" ] || {
    abaw infer -m "$model" --visual-dir "$feats/visual" --audio-dir "$feats/audio" --like-dir "$labels" \
      -o "$out/$tag.logits/" --skip-existing
    abaw smooth "$out/$tag.logits"/*.npy -o "$out/$tag.pred/"
    abaw score --pred-dir "$out/$tag.pred" --label-dir "$labels" -o "$out/$tag.json"
  }
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print("%.4f\t%.4f" % (r["accuracy"], r["macro_f1"]))' "$out/$tag.json"
}

table3=$(
  printf 'p\td\tl\tAccuracy\tF1-Score\n'
  for pdl in "0.0 256 2" "0.0 512 2" "0.0 256 3" "0.0 512 3" "0.10 256 3" "0.10 256 4" "0.15 256 3" "0.20 256 3"; do
    set -- $pdl
    res=$(run "dual_p$1_d$2_l$3" --modality-dropout "$1" --d-model "$2" --layers "$3")
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$res"
  done
)
table2=$(
  printf 'Weight\tAccuracy\tF1-Score\n'
  for lam in 0.0 0.5 0.7 1.0; do
    res=$(run "baseline_l$lam" --arch baseline --lambda "$lam" --modality-dropout 0)
    printf '%s\t%s\n' "$lam" "$res"
  done
)
echo "Table 2. Baseline with different modality fusion weights (lambda)."
echo "$table2" | column -t -s $'\t'
echo
echo "Table 3. Ablation on modality dropout (p), dimension (d) and self-attention layers (l)."
echo "$table3" | column -t -s $'\t'

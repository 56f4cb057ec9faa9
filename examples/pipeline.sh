#!/usr/bin/env bash
# One video through a shell pipe, from media to a score (model trained beforehand).
#
#   bash examples/pipeline.sh MODEL.safetensors VIDEO.mp4 [LABELS.txt]
#
# Prints the video's labels (Aff-Wild2 layout) to stdout, or its score when LABELS is given.
set -euo pipefail
model=${1:?MODEL.safetensors}; video=${2:?VIDEO.mp4}; labels=${3:-}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

abaw extract-visual "$video" -o "$tmp/v.npy"
abaw extract-audio "$video" | abaw align - --like "$tmp/v.npy" -o "$tmp/a.npy"
if [ -n "$labels" ]; then
  abaw infer -m "$model" --visual "$tmp/v.npy" --audio "$tmp/a.npy" | abaw smooth - | abaw score - "$labels" --format table
else
  abaw infer -m "$model" --visual "$tmp/v.npy" --audio "$tmp/a.npy" | abaw smooth -
fi

#!/usr/bin/env bash
# Re-creates every shipped MODEL file from the public data, with the exact commands recorded inside each file.
set -euo pipefail
cd "$(dirname "$0")/../.."
for space in nb201 fbnet; do
  latency train --space "$space" --data measurements/hw-nas-bench --seed 0 --out "latency/models/$space.pt"
  for predictor in ridge flops; do
    latency train --space "$space" --data measurements/hw-nas-bench --seed 0 --predictor "$predictor" \
      --out "latency/models/$space-$predictor.pt"
  done
done

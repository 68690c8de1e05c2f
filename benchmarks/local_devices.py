"""The shipped predictors on this project's own devices (measurements/local), from 10 samples each.

    python benchmarks/local_devices.py [--write-evaluation]

For every local device column: the shipped ``bayes`` model and the ``ridge`` and ``flops`` baselines are adapted
from the same 10 measurements (the architectures the shipped model asks for) and scored on every other
architecture measured on that device (no trimming). ``--write-evaluation`` records the shipped model's figures
in latency/models/evaluation.json, which tests/test_pretrained.py checks a re-train against.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from latency.datasets import load_dataset
from latency.evaluate import score_on_device
from latency.pretrained import MODELS_DIR, load_pretrained

LOCAL = Path(__file__).resolve().parents[1] / "measurements" / "local"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-evaluation", action="store_true")
    args = parser.parse_args()
    record: dict = {}
    print(f"{'space':6} {'device':22} {'predictor':9} {'n':>3} {'Spearman':>9} {'within10':>9} {'MAPE %':>7} "
          f"{'coverage':>9}")
    for space in ("nb201", "fbnet"):
        data = load_dataset(LOCAL, space)
        shipped = load_pretrained(space)
        for device in data.devices:
            samples = shipped.references(10)
            for name in ("bayes", "ridge", "flops"):
                model = shipped if name == "bayes" else load_pretrained(space, name)
                scores, _ = score_on_device(model, data, device, samples=samples)
                cov = "-" if scores.coverage is None else f"{scores.coverage:.2f}"
                print(f"{space:6} {device:22} {name:9} {len(samples):3d} {scores.spearman:9.3f} "
                      f"{scores.within10:9.3f} {scores.mape:7.2f} {cov:>9}", flush=True)
                if name == "bayes":
                    record.setdefault(space, {})[device] = {"spearman": round(scores.spearman, 4),
                                                             "within10": round(scores.within10, 4),
                                                             "mape": round(scores.mape, 3)}
    if args.write_evaluation:
        path = MODELS_DIR / "evaluation.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

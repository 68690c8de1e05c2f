"""How the number and the choice of target samples matter: leave-one-device-out on the public data.

    python benchmarks/sample_count.py [--spaces nb201,fbnet] [--predictors bayes,ridge,flops] [--n 5,10,20,50]

For every public device as the unseen target, each predictor is fitted once on the other devices (protocol
rows only) and then adapted with n of its own reference architectures for each n, and with HELP's fixed list
of 10 (``help10``) and 10 random training architectures (``random10``); it is scored on the query rows after
trimming, as ``latency evaluate`` does. Prints mean Spearman and share within +-10% per (predictor, samples).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

from latency.datasets import load_dataset
from latency.evaluate import Scores
from latency.predictors import make_predictor

DATA = Path(__file__).resolve().parents[1] / "measurements" / "hw-nas-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", default="nb201,fbnet")
    parser.add_argument("--predictors", default="bayes,ridge,flops")
    parser.add_argument("--n", default="5,10,20,50")
    args = parser.parse_args()
    counts = [int(v) for v in args.n.split(",")]
    for space in args.spaces.split(","):
        data = load_dataset(DATA, space)
        train_rows, query_rows = data.protocol_rows()
        query = [data.archs[i] for i in query_rows]
        help_refs = data.reference_archs()[:10]
        rng = np.random.default_rng(0)
        scores: dict[tuple[str, str], list[Scores]] = {}
        for target in data.devices:
            sources = [d for d in data.devices if d != target]
            truth = data.column(target)
            random10 = [data.archs[i] for i in rng.choice(train_rows, size=10, replace=False)]
            for name in args.predictors.split(","):
                model = make_predictor(name, space).fit(data, devices=sources, rows=train_rows)
                plans = {f"own{n}": model.references(n) for n in counts}
                plans["help10"] = help_refs
                plans["random10"] = random10
                for label, archs in plans.items():
                    adapted = copy.deepcopy(model).adapt(archs, truth[data.rows_of(archs)])
                    scores.setdefault((name, label), []).append(
                        Scores.of(adapted.predict(query), truth[query_rows]))
        labels = [f"own{n}" for n in counts] + ["help10", "random10"]
        print(f"\n{space}: mean over {len(data.devices)} unseen devices, Spearman / within10")
        print(f"{'predictor':10}" + "".join(f"{label:>16}" for label in labels))
        for name in args.predictors.split(","):
            cells = []
            for label in labels:
                s = scores[(name, label)]
                cells.append(f"{np.mean([x.spearman for x in s]):.3f} / {np.mean([x.within10 for x in s]):.3f}")
            print(f"{name:10}" + "".join(f"{c:>16}" for c in cells), flush=True)


if __name__ == "__main__":
    main()

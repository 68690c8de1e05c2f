"""Predictor speed on this machine: meta-training time, adaptation time, batched prediction throughput.

    python benchmarks/predictor_speed.py [--predictors bayes,help,maml,ridge] [--spaces nb201,fbnet]

Meta-training uses the protocol's training rows of every public device (as ``latency train`` does). Adaptation
is timed over 20 repeats with the model's 10 references. Throughput is timed on one million random encoded
architectures (``predict_encoded``, what a search loop calls) and on 10,000 arch strings (``predict``,
parsing included).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from exporters.spaces import get_space
from latency.datasets import load_dataset
from latency.predictors import make_predictor

DATA = Path(__file__).resolve().parents[1] / "measurements" / "hw-nas-bench"


def random_encodings(space: str, n: int, seed: int = 0) -> np.ndarray:
    s = get_space(space)
    k = len(s.choices)
    slots = s.encoding_size // k
    rng = np.random.default_rng(seed)
    picks = rng.integers(k, size=(n, slots))
    x = np.zeros((n, slots, k), dtype=np.float32)
    np.put_along_axis(x, picks[..., None], 1.0, axis=2)
    return x.reshape(n, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictors", default="bayes,help,maml,ridge")
    parser.add_argument("--spaces", default="nb201,fbnet")
    args = parser.parse_args()
    print(f"{'space':6} {'predictor':9} {'train s':>8} {'adapt ms':>9} {'encoded archs/s':>16} {'strings archs/s':>16}")
    for space in args.spaces.split(","):
        data = load_dataset(DATA, space)
        train_rows, _ = data.protocol_rows()
        target = data.devices[-1]
        encoded = random_encodings(space, 1_000_000)
        strings = get_space(space).sample(10_000, seed=1)
        for name in args.predictors.split(","):
            model = make_predictor(name, space)
            t0 = time.perf_counter()
            model.fit(data, devices=data.devices[:-1], rows=train_rows)
            train_s = time.perf_counter() - t0
            refs = model.references(10)
            y = data.column(target)[data.rows_of(refs)]
            adapt = []
            for _ in range(20):
                t0 = time.perf_counter()
                model.adapt(refs, y)
                adapt.append(time.perf_counter() - t0)
            x = encoded if name in ("bayes", "ridge") else model.encode(strings)
            model.predict_encoded(x[:1000])
            t0 = time.perf_counter()
            model.predict_encoded(x)
            enc_rate = len(x) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            model.predict(strings)
            str_rate = len(strings) / (time.perf_counter() - t0)
            print(f"{space:6} {name:9} {train_s:8.1f} {statistics.median(adapt) * 1e3:9.2f} {enc_rate:16.3g} "
                  f"{str_rate:16.3g}", flush=True)


if __name__ == "__main__":
    main()

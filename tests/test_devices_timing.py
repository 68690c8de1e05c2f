"""The shared measuring method on synthetic run_blocks: known costs, injected spikes, timer faults."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from devices.base import DeviceError
from devices.measurement import MeasureConfig, MeasureConfigError, summarize
from devices.timing import measure_blocks


class FakeModel:
    """A model whose every run costs ``cost_s``; records each block it is asked for. No sleeping: run_block
    reports the time a real timer would, so tests are instant and exact."""

    def __init__(self, cost_s: float, spikes: dict[int, float] | None = None, noise: float = 0.0, seed: int = 0):
        self.cost_s = cost_s
        self.spikes = spikes or {}
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.blocks: list[int] = []
        self.chunks: list[tuple[int, int]] = []

    def block_time(self, n: int) -> float:
        k = len(self.blocks)
        self.blocks.append(n)
        factor = self.spikes.get(k, 1.0) * (1.0 + self.noise * abs(self.rng.standard_normal()))
        return n * self.cost_s * factor

    def run_block(self, n: int) -> float:
        return self.block_time(n)

    def run_blocks(self, number: int, repeat: int) -> list[float]:
        self.chunks.append((number, repeat))
        self.blocks.append(number)  # the untimed run time_evaluator makes first
        return [self.block_time(number) for _ in range(repeat)]


def test_calibration_gives_blocks_of_at_least_min_block_s_and_no_bigger_than_needed():
    config = MeasureConfig()
    model = FakeModel(cost_s=0.0013)
    m = measure_blocks(model.run_block, config, method="fake")
    assert m.number * 0.0013 >= config.min_block_s
    assert (m.number - 1) * 0.0013 < config.min_block_s
    assert m.median_ms == pytest.approx(1.3)
    assert m.times_ms == pytest.approx([1.3] * m.runs)


def test_warm_up_respects_runs_and_seconds_and_reuses_its_timings():
    config = MeasureConfig(warmup_runs=3, warmup_s=0.02, min_block_s=0.005)
    model = FakeModel(cost_s=0.0001)
    m = measure_blocks(model.run_block, config, method="fake")
    timed_blocks = m.runs
    warm_blocks = model.blocks[: len(model.blocks) - timed_blocks]
    assert sum(warm_blocks) == m.warmup_runs >= 3
    warm_s = sum(warm_blocks) * 0.0001
    assert warm_s >= config.warmup_s
    # Calibration happens inside the warm-up: it costs at most one more block of min_block_s.
    assert warm_s <= config.warmup_s + 2 * config.min_block_s
    assert all(n == m.number for n in model.blocks[len(warm_blocks):])


def test_a_slow_model_is_not_warmed_up_more_than_warmup_runs():
    config = MeasureConfig(warmup_runs=2, warmup_s=0.0, min_runs=10, min_run_time_s=0.0)
    model = FakeModel(cost_s=0.2)
    m = measure_blocks(model.run_block, config, method="fake")
    assert m.number == 1
    assert m.warmup_runs == 2
    assert m.runs == 10


def test_steady_model_stops_at_the_minimums():
    config = MeasureConfig(min_runs=12, min_run_time_s=0.3, max_runs=100)
    model = FakeModel(cost_s=0.002)
    m = measure_blocks(model.run_block, config, method="fake")
    block_s = m.number * 0.002
    assert m.runs == max(12, math.ceil(0.3 / block_s - 1e-9))
    assert sum(m.times_ms) / 1e3 * m.number >= 0.3 - 1e-9


def test_noisy_model_runs_on_to_max_runs():
    config = MeasureConfig(min_runs=10, max_runs=40, min_run_time_s=0.01, target_cv=0.001)
    model = FakeModel(cost_s=0.002, noise=0.2)
    m = measure_blocks(model.run_block, config, method="fake")
    assert m.runs == 40


def test_noise_below_target_cv_stops_early():
    config = MeasureConfig(min_runs=10, max_runs=200, min_run_time_s=0.01, target_cv=0.05)
    model = FakeModel(cost_s=0.002, noise=0.01)
    m = measure_blocks(model.run_block, config, method="fake")
    assert 10 <= m.runs < 200


def test_max_time_s_caps_a_long_measurement():
    config = MeasureConfig(warmup_runs=1, warmup_s=0.0, min_runs=5, max_runs=10_000, min_run_time_s=100.0,
                           max_time_s=0.15)

    def sleepy(n: int) -> float:
        start = time.perf_counter()
        time.sleep(0.01 * n)
        return time.perf_counter() - start

    m = measure_blocks(sleepy, config, method="sleep")
    assert 1 <= m.runs < 30
    assert m.wall_s < 0.15 + 0.1  # stops before a block would cross the cap (plus scheduler slack)


def test_statistics_equal_numpy_on_the_raw_times():
    model = FakeModel(cost_s=0.003, noise=0.3, seed=7)
    m = measure_blocks(model.run_block, MeasureConfig(min_runs=30, min_run_time_s=0.0, target_cv=0.0,
                                                      max_runs=37), method="fake")
    xs = np.array(m.times_ms)
    assert m.runs == len(xs) == 37
    assert m.median_ms == pytest.approx(np.median(xs))
    q1, q3 = np.percentile(xs, [25, 75])
    assert m.q1_ms == pytest.approx(q1)
    assert m.q3_ms == pytest.approx(q3)
    assert m.iqr_ms == pytest.approx(q3 - q1)
    assert m.mean_ms == pytest.approx(xs.mean())
    assert m.std_ms == pytest.approx(xs.std(ddof=1))
    assert m.cv == pytest.approx(xs.std(ddof=1) / xs.mean())
    assert m.min_ms == pytest.approx(xs.min())
    fences = (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1))
    assert m.n_outliers == int(np.sum((xs < fences[0]) | (xs > fences[1])))


def test_outlier_flag_fires_on_injected_spikes_and_not_on_a_steady_model():
    config = MeasureConfig(warmup_runs=1, warmup_s=0.0, min_runs=40, max_runs=40, min_run_time_s=0.0)
    clean = measure_blocks(FakeModel(cost_s=0.002, noise=0.01).run_block, config, method="fake")
    assert not clean.outlier
    # One block in three (after the warm-up) takes 4x as long: the machine was busy.
    spikes = {k: 4.0 for k in range(2, 200, 3)}
    spiky = measure_blocks(FakeModel(cost_s=0.002, noise=0.01, spikes=spikes).run_block, config, method="fake")
    assert spiky.outlier
    assert spiky.n_outliers > 0 or spiky.iqr_ms > 0.5 * spiky.median_ms
    # The median stays the model's cost even so.
    assert spiky.median_ms < 1.5 * clean.median_ms


def test_a_single_stray_block_is_counted_but_does_not_flag():
    config = MeasureConfig(warmup_runs=1, warmup_s=0.0, min_runs=40, max_runs=40, min_run_time_s=0.0)
    m = measure_blocks(FakeModel(cost_s=0.002, noise=0.01, spikes={20: 10.0}).run_block, config, method="fake")
    assert m.n_outliers >= 1
    assert not m.outlier


def test_chunked_backend_pays_its_discarded_call_rarely_and_counts_it_as_warm_up():
    config = MeasureConfig(warmup_runs=2, warmup_s=0.0, min_runs=25, min_run_time_s=0.0, max_runs=200)
    model = FakeModel(cost_s=0.05)
    m = measure_blocks(model.run_block, config, method="fake", run_blocks=model.run_blocks, run_blocks_discard=1)
    assert m.runs == 25
    assert model.chunks == [(1, 25)]  # all minimum blocks in one call
    # one explicit warm-up run (calibration) plus the evaluator's own untimed run
    assert m.warmup_runs == 2


def test_chunked_backend_asks_for_more_blocks_until_the_cv_settles():
    config = MeasureConfig(warmup_runs=1, warmup_s=0.0, min_runs=20, min_run_time_s=0.0, max_runs=60,
                           target_cv=0.0)
    model = FakeModel(cost_s=0.01, noise=0.1)
    m = measure_blocks(model.run_block, config, method="fake", run_blocks=model.run_blocks, run_blocks_discard=1)
    assert m.runs == 60
    assert 1 < len(model.chunks) <= 6
    # each call times at least 20 runs per run it discards (until max_runs cuts the last one short)
    assert all(number * repeat >= 20 for number, repeat in model.chunks[:-1])
    assert m.warmup_runs == 1 + len(model.chunks)


def test_meta_fields_config_and_timestamps_are_filled():
    before = time.time()
    config = MeasureConfig(min_runs=5, min_run_time_s=0.0)
    m = measure_blocks(FakeModel(0.001).run_block, config, method="fake", device_spec="x", model_hash="abc")
    assert m.device_spec == "x" and m.model_hash == "abc" and m.method == "fake"
    assert m.config == config.to_dict()
    assert MeasureConfig.from_dict(m.config) == config
    assert before <= m.timestamp <= time.time()
    assert m.wall_s > 0


@pytest.mark.parametrize("bad", [float("nan"), -1.0, "soon", None, float("inf")])
def test_a_broken_timer_is_a_one_line_device_error(bad):
    with pytest.raises(DeviceError) as err:
        measure_blocks(lambda n: bad, MeasureConfig(), method="fake")
    assert "\n" not in str(err.value)
    assert "timer" in str(err.value)


def test_a_timer_that_never_advances_is_reported_not_looped_on():
    with pytest.raises(DeviceError, match="no measurable time"):
        measure_blocks(lambda n: 0.0, MeasureConfig(), method="fake")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"min_runs": 0}, "min_runs"), ({"max_runs": 3, "min_runs": 5}, "max_runs"),
     ({"max_time_s": 0}, "max_time_s"), ({"warmup_s": -1}, "warmup_s"), ({"target_cv": float("nan")}, "target_cv"),
     ({"min_runs": 2.5}, "min_runs")],
)
def test_bad_measure_config_names_the_field(kwargs, field):
    with pytest.raises(MeasureConfigError) as err:
        MeasureConfig(**kwargs)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_summarize_rejects_no_runs():
    with pytest.raises(ValueError, match="no timed runs"):
        summarize([], number=1, warmup_runs=0, method="x")

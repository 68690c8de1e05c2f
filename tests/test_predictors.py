"""Predictors on the shipped public data: fit on some devices, adapt to a held-out one, score unseen archs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from latency.datasets import load_dataset
from latency.errors import InputError
from latency.evaluate import Scores
from latency.predictors import load_model, make_predictor

DATA = "measurements/hw-nas-bench"
SOURCES = ["1080ti_1", "1080ti_256", "silver_4114", "samsung_a50", "pixel3", "titanx_32", "gold_6240"]
TARGET = "silver_4210r"


@pytest.fixture(scope="module")
def nb201():
    return load_dataset(DATA, "nb201")


@pytest.fixture(scope="module")
def split(nb201):
    return nb201.protocol_rows()


@pytest.fixture(scope="module")
def bayes(nb201, split):
    return make_predictor("bayes", "nb201").fit(nb201, devices=SOURCES, rows=split[0])


def _query(nb201, split, n=400):
    rows = split[1][:n]
    return [nb201.archs[i] for i in rows], nb201.column(TARGET)[rows]


def _adapt(model, nb201, n=10):
    refs = model.references(n)
    return model.adapted(refs, nb201.column(TARGET)[nb201.rows_of(refs)])


def test_protocol_rows_keep_query_unseen(nb201, split):
    train, query = split
    assert set(nb201.index[train]) >= set(nb201.splits["reference_architectures"])
    assert len(query) == 1000 - len(set(range(900, 1900)) & set(nb201.index[train]))
    assert not set(train) & set(query)
    assert nb201.index[train].max() < 900 or set(nb201.index[train][nb201.index[train] >= 900]) <= set(
        nb201.splits["reference_architectures"])


def test_bayes_adapts_to_unseen_device_from_ten_samples(nb201, split, bayes):
    archs, truth = _query(nb201, split)
    scores = Scores.of(_adapt(bayes, nb201).predict(archs), truth)
    assert scores.spearman > 0.9
    assert scores.within10 > 0.6


def test_references_are_training_archs_and_nested(bayes, split, nb201):
    refs = bayes.references(10)
    assert len(set(refs)) == 10
    train_archs = {nb201.archs[i] for i in split[0]}
    assert set(refs) <= train_archs
    assert bayes.references(5) == refs[:5]
    with pytest.raises(InputError):
        bayes.references(10_000)


def test_more_samples_help(nb201, split, bayes):
    archs, truth = _query(nb201, split)
    few = Scores.of(_adapt(bayes, nb201, 3).predict(archs), truth)
    many = Scores.of(_adapt(bayes, nb201, 40).predict(archs), truth)
    assert many.mape < few.mape


def test_adapt_does_not_touch_the_meta_trained_model(nb201, bayes):
    before = bayes.predict(nb201.archs[:20])
    _adapt(bayes, nb201)
    np.testing.assert_array_equal(before, bayes.predict(nb201.archs[:20]))


def test_intervals_bracket_predictions_and_cover(nb201, split, bayes):
    archs, truth = _query(nb201, split)
    model = _adapt(bayes, nb201)
    lo, hi = model.predict_interval(archs, 0.9)
    mid = model.predict(archs)
    assert np.all(lo <= mid) and np.all(mid <= hi)
    coverage = np.mean((truth >= lo) & (truth <= hi))
    assert 0.6 <= coverage <= 1.0
    lo50, hi50 = model.predict_interval(archs, 0.5)
    assert np.all(hi50 - lo50 < hi - lo)


def test_save_load_round_trip(tmp_path, nb201, bayes):
    path = bayes.save(tmp_path / "m.pt", info={"command": "test"})
    loaded = load_model(path, "nb201")
    assert loaded.references(10) == bayes.references(10)
    a = _adapt(bayes, nb201).predict(nb201.archs[:50])
    b = _adapt(loaded, nb201).predict(nb201.archs[:50])
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert loaded.info_["command"] == "test"
    with pytest.raises(InputError, match="space"):
        load_model(path, "fbnet")


@pytest.mark.parametrize("name", ["ridge", "flops"])
def test_baselines_rank_unseen_archs(name, nb201, split):
    model = make_predictor(name, "nb201").fit(nb201, devices=SOURCES, rows=split[0])
    archs, truth = _query(nb201, split)
    pred = _adapt(model, nb201).predict(archs)
    assert np.all(pred > 0)
    assert spearmanr(pred, truth)[0] > (0.85 if name == "ridge" else 0.5)


@pytest.mark.parametrize("name", ["help", "maml"])
def test_gradient_meta_learners_train_and_adapt(name, nb201, split, tmp_path):
    model = make_predictor(name, "nb201", iterations=60, tasks_per_batch=8).fit(
        nb201, devices=SOURCES, rows=split[0])
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    archs, truth = _query(nb201, split, 200)
    adapted = _adapt(model, nb201)
    pred = adapted.predict(archs)
    assert np.all(np.isfinite(pred)) and np.all(pred > 0)
    assert spearmanr(pred, truth)[0] > 0.5
    loaded = load_model(model.save(tmp_path / f"{name}.pt"))
    np.testing.assert_allclose(_adapt(loaded, nb201).predict(archs), pred, rtol=1e-5)


def test_help_requires_samples(nb201, split):
    model = make_predictor("help", "nb201", iterations=2, tasks_per_batch=2).fit(
        nb201, devices=SOURCES[:3], rows=split[0])
    with pytest.raises(InputError, match="adapt"):
        model.predict(nb201.archs[:3])


def test_fbnet_bayes(tmp_path):
    data = load_dataset(DATA, "fbnet")
    train, query = data.protocol_rows()
    model = make_predictor("bayes", "fbnet", tau=0.01, noise=0.05).fit(
        data, devices=["1080ti_64", "silver_4114", "samsung_a50", "titanx_1", "gold_6240"], rows=train)
    refs = model.references(10)
    model.adapt(refs, data.column("silver_4210r")[data.rows_of(refs)])
    rows = query[:300]
    pred = model.predict([data.archs[i] for i in rows])
    assert spearmanr(pred, data.column("silver_4210r")[rows])[0] > 0.8


def test_bad_adaptation_input_is_rejected(bayes):
    refs = bayes.references(3)
    with pytest.raises(InputError):
        bayes.adapted(refs, [1.0, float("nan"), 2.0])
    with pytest.raises(InputError):
        bayes.adapted(refs, [1.0, -1.0, 2.0])
    with pytest.raises(InputError):
        bayes.adapted([], [])
    with pytest.raises(InputError):
        bayes.adapted(refs, [1.0])


def test_gcn_graphs_follow_the_cell():
    from latency.predictors.meta import GCN_NODES, GCN_TYPES, nb201_graphs

    arch = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
    g = nb201_graphs([arch])[0]
    adj = g[: GCN_NODES * GCN_NODES].reshape(GCN_NODES, GCN_NODES)
    feat = g[GCN_NODES * GCN_NODES:].reshape(GCN_NODES, GCN_TYPES)
    np.testing.assert_allclose(adj.sum(axis=1), 1.0)
    assert feat.sum() == GCN_NODES and feat[0, 0] == 1 and feat[-1, -1] == 1
    # edge 2 (node 2 <- node 1) reads the op node of edge 0, the only input of cell node 1
    assert adj[1 + 2, 1 + 0] > 0 and adj[1 + 2, 0] == 0
    # the output reads the three edges into cell node 3 (edges 3, 4, 5)
    assert all(adj[-1, 1 + e] > 0 for e in (3, 4, 5)) and adj[-1, 1 + 0] == 0


def test_help_with_gcn_encoder_runs(nb201, split):
    model = make_predictor("help", "nb201", encoder="gcn", iterations=5, tasks_per_batch=2, hidden=32).fit(
        nb201, devices=SOURCES[:3], rows=split[0])
    pred = _adapt(model, nb201).predict(nb201.archs[:10])
    assert pred.shape == (10,) and np.all(np.isfinite(pred))
    with pytest.raises(InputError, match="GCN"):
        make_predictor("help", "fbnet", encoder="gcn").encode(["x"])


def test_hybrid_from_fitted_parts_equals_a_hybrid_fit(nb201, split, bayes):
    from latency.predictors.meta import HybridPredictor

    helper = make_predictor("help", "nb201", iterations=30).fit(nb201, devices=SOURCES, rows=split[0])
    _adapt(helper, nb201)  # parts used (adapted) elsewhere first must not leak their target into the blend
    whole = make_predictor("hybrid", "nb201", iterations=30).fit(nb201, devices=SOURCES, rows=split[0])
    parts = HybridPredictor.from_parts(bayes, helper)
    archs, _ = _query(nb201, split, 100)
    np.testing.assert_allclose(_adapt(parts, nb201).predict(archs), _adapt(whole, nb201).predict(archs), rtol=1e-5)
    assert parts.references(10) == whole.references(10)

"""The shipped predictors: small, self-describing, reproducible by the command they record."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from latency.datasets import load_dataset
from latency.evaluate import score_on_device
from latency.predictors import load_model
from latency.pretrained import MODELS_DIR, load_pretrained, pretrained_path

LOCAL = "measurements/local"


@pytest.mark.parametrize("space", ["nb201", "fbnet"])
@pytest.mark.parametrize("predictor", ["bayes", "ridge", "flops"])
def test_shipped_models_are_small_and_record_their_command(space, predictor):
    path = pretrained_path(space, predictor)
    assert path.stat().st_size < 200_000
    model = load_pretrained(space, predictor)
    assert model.space == space
    assert model.info_["command"].startswith("latency train ")
    assert model.info_["seed"] == 0
    assert len(model.train_devices_) == 13
    assert len(model.references(10)) == 10


def test_unknown_shipped_model_names_the_choices():
    from latency.errors import InputError

    with pytest.raises(InputError, match="nb201.pt"):
        pretrained_path("nb201", "nope")


@pytest.mark.parametrize("space", ["nb201", "fbnet"])
def test_retrain_reproduces_the_shipped_evaluation(space, tmp_path):
    shipped = load_pretrained(space)
    args = shlex.split(shipped.info_["command"])[1:]
    args[args.index("--out") + 1] = str(tmp_path / "m.pt")
    proc = subprocess.run([sys.executable, "-m", "latency.cli", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    retrained = load_model(tmp_path / "m.pt")
    assert retrained.references(10) == shipped.references(10)
    expected = json.loads((MODELS_DIR / "evaluation.json").read_text())[space]
    data = load_dataset(LOCAL, space)
    for device, figures in expected.items():
        scores, _ = score_on_device(retrained, data, device)
        assert abs(scores.spearman - figures["spearman"]) < 0.02, device
        assert abs(scores.within10 - figures["within10"]) < 0.05, device

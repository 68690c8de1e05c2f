"""Gradient-based meta-learners: HELP (Lee et al., NeurIPS 2021) and MAML, written with ``torch.func``.

Both learn an initialisation of a latency network such that a few gradient steps on a new device's samples fit
that device. Latencies are normalised per task by the adaptation samples' own mean and spread (the only
statistics a new device offers), and milliseconds are recovered with the same two numbers.

HELP adds the hardware embedding: the device's normalised latencies on the reference architectures. A small
network turns it into a FiLM modulation (scale and shift of every hidden layer) applied to the shared network
before adaptation, and the inner loop is Meta-SGD: every parameter has its own learned step size.

Tasks are the public devices plus random mixtures of them (latency is additive, so a mixture of devices is a
plausible device); this keeps the meta-learner from memorising a dozen devices.

Encoders: an MLP over the one-hot encoding (both spaces) or, for NB201, a GCN over the cell as HELP draws it
(operations as nodes: input, six edge operations, output).
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from exporters.nb201.arch import EDGES, OPS, parse
from latency.datasets import LatencyDataset
from latency.errors import InputError
from latency.predictors.base import LatencyPredictor
from latency.predictors.bayes import BayesCostPredictor

GCN_NODES = 2 + len(EDGES)  # input, one node per edge operation, output
GCN_TYPES = len(OPS) + 2


def nb201_graphs(archs: list[str]) -> np.ndarray:
    """Per arch, the flattened (adjacency with self loops, row-normalised) and node one-hot features."""
    out = np.zeros((len(archs), GCN_NODES * GCN_NODES + GCN_NODES * GCN_TYPES), dtype=np.float32)
    for r, arch in enumerate(archs):
        ops = parse(arch)
        adj = np.eye(GCN_NODES, dtype=np.float32)
        feat = np.zeros((GCN_NODES, GCN_TYPES), dtype=np.float32)
        feat[0, 0] = 1.0
        feat[-1, -1] = 1.0
        for e, ((target, source), op) in enumerate(zip(EDGES, ops, strict=True)):
            node = 1 + e
            feat[node, 1 + OPS.index(op)] = 1.0
            # The op node reads node `source` of the cell: cell node 0 is the input, node i>0 is the sum of the
            # op nodes whose target is i.
            if source == 0:
                adj[node, 0] = 1.0
            else:
                for e2, (t2, _) in enumerate(EDGES):
                    if t2 == source:
                        adj[node, 1 + e2] = 1.0
            if target == 3:
                adj[-1, node] = 1.0
        adj /= adj.sum(axis=1, keepdims=True)
        out[r] = np.concatenate([adj.ravel(), feat.ravel()])
    return out


class GCNEncoder(nn.Module):
    def __init__(self, hidden: int, layers: int = 3):
        super().__init__()
        dims = [GCN_TYPES] + [hidden] * layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n2 = GCN_NODES * GCN_NODES
        adj = x[..., :n2].reshape(*x.shape[:-1], GCN_NODES, GCN_NODES)
        h = x[..., n2:].reshape(*x.shape[:-1], GCN_NODES, GCN_TYPES)
        for layer in self.layers:
            h = torch.relu(adj @ layer(h))
        return h.mean(dim=-2)


class MLPEncoder(nn.Module):
    def __init__(self, in_dim: int, hidden: int, layers: int = 2):
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x


class LatencyNet(nn.Module):
    """encoder -> FiLM(gamma, beta) -> hidden layer -> scalar normalised latency."""

    def __init__(self, encoder: nn.Module, hidden: int):
        super().__init__()
        self.encoder = encoder
        self.hidden = nn.Linear(encoder.out_dim, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        z = torch.relu(self.hidden(z) * (1 + gamma) + beta)
        return self.out(z).squeeze(-1)


class _GradientMetaLearner(LatencyPredictor):
    use_embedding: ClassVar[bool] = False
    per_parameter_lr: ClassVar[bool] = False

    def __init__(self, space: str, encoder: str = "mlp", hidden: int = 128, inner_steps: int = 5,
                 inner_lr: float = 0.05, meta_lr: float = 1e-3, iterations: int = 1500, tasks_per_batch: int = 16,
                 query_size: int = 128, mixtures: bool = True, n_references: int = 10, seed: int = 0):
        super().__init__(space, seed)
        self.encoder = encoder
        self.hidden = hidden
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.meta_lr = meta_lr
        self.iterations = iterations
        self.tasks_per_batch = tasks_per_batch
        self.query_size = query_size
        self.mixtures = mixtures
        self.n_references = n_references

    # -- networks ----------------------------------------------------------------------------------------------
    def _encoder_kind(self) -> str:
        if self.encoder == "auto":
            return "gcn" if self.space == "nb201" else "mlp"
        if self.encoder == "gcn" and self.space != "nb201":
            raise InputError("the GCN encoder is defined for the nb201 cell only; use --encoder mlp")
        return self.encoder

    def encode(self, archs) -> np.ndarray:
        if self._encoder_kind() == "gcn":
            return nb201_graphs(list(archs))
        return super().encode(archs)

    def _build(self, in_dim: int) -> None:
        torch.manual_seed(self.seed)
        kind = self._encoder_kind()
        enc = GCNEncoder(self.hidden) if kind == "gcn" else MLPEncoder(in_dim, self.hidden)
        self._net = LatencyNet(enc, self.hidden)
        self._film = nn.Sequential(nn.Linear(self.n_references, 64), nn.ReLU(), nn.Linear(64, 2 * self.hidden))
        nn.init.zeros_(self._film[-1].weight)
        nn.init.zeros_(self._film[-1].bias)
        names = [n for n, _ in self._net.named_parameters()]
        init_lr = math.log(self.inner_lr)
        if self.per_parameter_lr:
            self._log_lr = {n: torch.full_like(p, init_lr) for n, p in self._net.named_parameters()}
        else:
            self._log_lr = {n: torch.full((), init_lr) for n in names}

    def _film_of(self, film_params: dict, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.use_embedding:
            zeros = torch.zeros(emb.shape[:-1] + (self.hidden,))
            return zeros, zeros
        gb = functional_call(self._film, film_params, (emb,))
        return gb[..., : self.hidden], gb[..., self.hidden:]

    def _inner(self, params: dict, log_lr: dict, gamma, beta, xs, ys) -> dict:
        def loss(p):
            pred = functional_call(self._net, p, (xs, gamma, beta))
            return ((pred - ys) ** 2).mean()

        for _ in range(self.inner_steps):
            g = grad(loss)(params)
            params = {n: params[n] - torch.exp(log_lr[n]) * g[n] for n in params}
        return params

    # -- fit ---------------------------------------------------------------------------------------------------
    def _fit(self, data: LatencyDataset) -> None:
        rng = np.random.default_rng(self.seed)
        # The same informative references the Bayesian cost model picks, so both can be adapted from one set of
        # measurements (and combined).
        prior = BayesCostPredictor(self.space, n_references=self.n_references, seed=self.seed)
        prior._fit(data)
        self.reference_archs_ = list(prior.reference_archs_[: self.n_references])
        refs = data.rows_of(self.reference_archs_)
        scales = data.latency.mean(axis=0)
        x_all = torch.tensor(self.encode(data.archs), dtype=torch.float32)
        self._build(x_all.shape[1])
        lat = data.latency / scales  # devices on a common scale, so mixtures weigh them evenly
        n_dev = lat.shape[1]
        meta_params = {"net": dict(self._net.named_parameters()), "film": dict(self._film.named_parameters()),
                       "lr": self._log_lr}
        # Plain MAML keeps its inner step size fixed and has no embedding network to learn.
        learned = ["net", "film", "lr"] if self.use_embedding else ["net"]
        if self.per_parameter_lr and "lr" not in learned:
            learned.append("lr")
        leaves = [p for group in learned for p in meta_params[group].values()]
        for p in leaves:
            p.requires_grad_(True)
        opt = torch.optim.Adam(leaves, lr=self.meta_lr)
        refs_t = torch.tensor(refs)

        def task_loss(net_p, film_p, log_lr, xq, yq, y_ref):
            m, s = y_ref.mean(), y_ref.std() + 1e-6
            ys, yqn = (y_ref - m) / s, (yq - m) / s
            gamma, beta = self._film_of(film_p, ys)
            adapted = self._inner(net_p, log_lr, gamma, beta, x_all[refs_t], ys)
            pred = functional_call(self._net, adapted, (xq, gamma, beta))
            return ((pred - yqn) ** 2).mean()

        batched = vmap(task_loss, in_dims=(None, None, None, 0, 0, 0))
        self.loss_curve_ = []
        for it in range(self.iterations):
            if self.mixtures:
                weights = rng.dirichlet(np.full(n_dev, 0.3), size=self.tasks_per_batch)
                weights[: min(n_dev, self.tasks_per_batch)] = np.eye(n_dev)[
                    rng.permutation(n_dev)[: min(n_dev, self.tasks_per_batch)]]
            else:
                weights = np.eye(n_dev)[rng.integers(n_dev, size=self.tasks_per_batch)]
            y_task = lat @ weights.T  # (archs, tasks)
            q = rng.integers(len(data.archs), size=(self.tasks_per_batch, self.query_size))
            xq = x_all[torch.tensor(q)]
            yq = torch.tensor(np.take_along_axis(y_task.T, q, axis=1), dtype=torch.float32)
            y_ref = torch.tensor(y_task[refs].T, dtype=torch.float32)
            loss = batched(meta_params["net"], meta_params["film"], meta_params["lr"], xq, yq, y_ref).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if it % 50 == 0 or it == self.iterations - 1:
                self.loss_curve_.append(float(loss.detach()))
        self.net_state_ = {n: p.detach().clone() for n, p in self._net.named_parameters()}
        self.film_state_ = {n: p.detach().clone() for n, p in self._film.named_parameters()}
        self.log_lr_state_ = {n: v.detach().clone() for n, v in self._log_lr.items()}
        self.embedding_mean_ = np.zeros(self.n_references, dtype=np.float32)

    # -- adapt / predict ---------------------------------------------------------------------------------------
    def _ensure_built(self) -> None:
        if getattr(self, "_net", None) is None:
            in_dim = self.encode(self.reference_archs_[:1]).shape[1]
            self._build(in_dim)

    def _tensors(self, d: dict) -> dict:
        return {k: torch.as_tensor(v) for k, v in d.items()}

    def _reference_order(self) -> list[str]:
        return self.reference_archs_

    def _adapt(self, x: np.ndarray, y: np.ndarray, archs: list[str]) -> Any:
        self._ensure_built()
        m = float(y.mean())
        s = float(y.std()) if len(y) > 1 and y.std() > 0 else 0.1 * m
        yn = torch.tensor((y - m) / s, dtype=torch.float32)
        where = {a: i for i, a in enumerate(archs)}
        emb = np.array(self.embedding_mean_, dtype=np.float32)
        for k, ref in enumerate(self.reference_archs_):
            if ref in where:
                emb[k] = float(yn[where[ref]])
        with torch.no_grad():
            gamma, beta = self._film_of(self._tensors(self.film_state_), torch.tensor(emb))
        net_p = {k: v.clone().requires_grad_(True) for k, v in self._tensors(self.net_state_).items()}
        adapted = self._inner(net_p, self._tensors(self.log_lr_state_), gamma, beta,
                              torch.tensor(x, dtype=torch.float32), yn)
        return {"params": {k: v.detach() for k, v in adapted.items()}, "gamma": gamma, "beta": beta,
                "mean": m, "std": s}

    def _predict_encoded(self, x: np.ndarray) -> np.ndarray:
        self._ensure_built()
        if self.target_ is None:
            raise InputError(f"predictor {self.name!r} needs adaptation samples (--adapt) before it can predict")
        t = self.target_
        with torch.no_grad():
            out = functional_call(self._net, t["params"], (torch.as_tensor(x, dtype=torch.float32),
                                                          t["gamma"], t["beta"]))
        ms = t["mean"] + t["std"] * out.numpy().astype(np.float64)
        return np.maximum(ms, 1e-3 * t["mean"])


class HelpPredictor(_GradientMetaLearner):
    """HELP: hardware embedding + FiLM modulation + Meta-SGD (per-parameter inner step sizes)."""

    name: ClassVar[str] = "help"
    use_embedding: ClassVar[bool] = True
    per_parameter_lr: ClassVar[bool] = True


class MamlPredictor(_GradientMetaLearner):
    """MAML without a hardware embedding: one learned initialisation, one inner step size."""

    name: ClassVar[str] = "maml"


class HybridPredictor(LatencyPredictor):
    """HELP blended with the Bayesian cost model: both adapted from the same references, predictions averaged
    in log space (``help_weight`` on HELP); intervals are the cost model's, moved with the blend."""

    name: ClassVar[str] = "hybrid"
    has_intervals: ClassVar[bool] = True

    def __init__(self, space: str, help_weight: float = 0.25, iterations: int = 1500, seed: int = 0):
        super().__init__(space, seed)
        self.help_weight = help_weight
        self.iterations = iterations

    def _parts(self) -> tuple[BayesCostPredictor, HelpPredictor]:
        if getattr(self, "_models", None) is None:
            bayes = BayesCostPredictor(self.space, seed=self.seed)
            bayes.load_state(self.bayes_state_)
            helper = HelpPredictor(self.space, iterations=self.iterations, seed=self.seed)
            helper.load_state(self.help_state_)
            self._models = (bayes, helper)
        return self._models

    def _fit(self, data: LatencyDataset) -> None:
        bayes = BayesCostPredictor(self.space, seed=self.seed)
        bayes.train_devices_ = self.train_devices_
        bayes._fit(data)
        helper = HelpPredictor(self.space, iterations=self.iterations, seed=self.seed)
        helper.train_devices_ = self.train_devices_
        helper._fit(data)
        self.bayes_state_ = bayes.state()
        self.help_state_ = helper.state()
        self.reference_archs_ = list(bayes.reference_archs_)
        self._models = (bayes, helper)

    @classmethod
    def from_parts(cls, bayes: BayesCostPredictor, helper: HelpPredictor, help_weight: float = 0.25
                   ) -> HybridPredictor:
        """The blend of an already fitted cost model and HELP model (same space, devices and training rows), as
        ``fit`` would have produced it: the evaluation fits each part once per fold and reuses both here."""
        if bayes.space != helper.space or bayes.train_devices_ != helper.train_devices_:
            raise InputError("hybrid parts must be fitted on the same space and devices")
        model = cls(bayes.space, help_weight=help_weight, iterations=helper.iterations, seed=helper.seed)
        bayes, helper = copy.deepcopy(bayes), copy.deepcopy(helper)
        bayes.target_ = helper.target_ = None
        for key in ("train_devices_", "n_train_archs_", "train_archs_sha256_"):
            setattr(model, key, getattr(bayes, key))
        model.fit_seconds_ = bayes.fit_seconds_ + helper.fit_seconds_
        model.bayes_state_, model.help_state_ = bayes.state(), helper.state()
        model.reference_archs_ = list(bayes.reference_archs_)
        model._models = (bayes, helper)
        model.target_ = None
        return model

    def _reference_order(self) -> list[str]:
        return self.reference_archs_

    def encode(self, archs) -> np.ndarray:
        return np.asarray(list(archs), dtype=object)

    def _adapt(self, x: np.ndarray, y: np.ndarray, archs: list[str]) -> Any:
        for model in self._parts():
            model.adapt(archs, y)
        return True

    def _blend(self, archs) -> tuple[np.ndarray, np.ndarray]:
        bayes, helper = self._parts()
        b = bayes.predict(archs)
        if self.target_ is None:
            return b, b
        h = helper.predict(archs)
        return b, np.exp((1 - self.help_weight) * np.log(b) + self.help_weight * np.log(h))

    def _predict_encoded(self, x: np.ndarray) -> np.ndarray:
        return self._blend(list(x))[1]

    def predict_interval(self, archs, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        b, blend = self._blend(archs)
        lo, hi = self._parts()[0].predict_interval(archs, level)
        return lo * blend / b, hi * blend / b

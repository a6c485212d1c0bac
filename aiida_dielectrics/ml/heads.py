"""Small trained heads on fixed feature vectors (frozen embeddings, composition features); pure numpy/torch.

Every head learns a scalar in the *transformed* space (log ε_elec, log(1 + ε_ionic), as the MEGNet
members do, :mod:`.transforms`) from standardised features::

    head = Head(**hyperparameters).fit(X, y, val=(X_val, y_val) | None, seed=0)
    head.predict(X) -> np.ndarray

* :class:`RidgeHead`: ridge regression, closed form.
* :class:`KernelRidgeHead`: kernel ridge with a Gaussian (RBF) kernel, closed form.
* :class:`MLPHead`: a one- or two-hidden-layer torch MLP, L1 loss on the standardised target, AdamW;
  with ``val`` it keeps the weights of the epoch with the lowest validation MAE (as the MEGNet members).

:func:`inner_cv_select` picks hyper-parameters by grouped k-fold CV **inside** the data it is given (the
training folds of an outer CV, or the train+val part): nothing outside is looked at.
:class:`HeadEnsemble` trains several seeds of one head; its member spread × a σ scale fitted on held-out
data (:func:`aiida_dielectrics.ml.ensemble.fit_sigma_scale`) is the σ.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


class _Standardised:
    def _fit_scaler(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.mu = X.mean(axis=0)
        self.sd = X.std(axis=0)
        self.sd[self.sd < 1e-8] = 1.0  # constant columns stay constant (zero) after scaling
        return self._scale(X)

    def _scale(self, X):
        return (np.asarray(X, dtype=np.float64) - self.mu) / self.sd


class RidgeHead(_Standardised):
    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def fit(self, X, y, val=None, seed: int = 0):
        Z = self._fit_scaler(X)
        y = np.asarray(y, dtype=np.float64)
        self.intercept = float(y.mean())
        self.coef = np.linalg.solve(Z.T @ Z + self.alpha * np.eye(Z.shape[1]), Z.T @ (y - self.intercept))
        return self

    def predict(self, X) -> np.ndarray:
        return self._scale(X) @ self.coef + self.intercept


class KernelRidgeHead(_Standardised):
    """k(x, x') = exp(−γ‖x − x'‖² / d) on standardised features (d: their number, so γ ~ 1 is a
    sensible scale whatever the width of the embedding)."""

    def __init__(self, alpha: float = 0.1, gamma: float = 1.0):
        self.alpha, self.gamma = float(alpha), float(gamma)

    def _kernel(self, A, B):
        squared = (A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2 * A @ B.T
        return np.exp(-self.gamma * np.clip(squared, 0, None) / A.shape[1])

    def fit(self, X, y, val=None, seed: int = 0):
        self.Z = self._fit_scaler(X)
        y = np.asarray(y, dtype=np.float64)
        self.intercept = float(y.mean())
        K = self._kernel(self.Z, self.Z)
        self.dual = np.linalg.solve(K + self.alpha * np.eye(len(K)), y - self.intercept)
        return self

    def predict(self, X) -> np.ndarray:
        return self._kernel(self._scale(X), self.Z) @ self.dual + self.intercept


class MLPHead(_Standardised):
    def __init__(
        self,
        width: int = 128,
        layers: int = 1,
        weight_decay: float = 1e-3,
        dropout: float = 0.1,
        lr: float = 2e-3,
        epochs: int = 200,
        batch_size: int = 256,
    ):
        self.width, self.layers = int(width), int(layers)
        self.weight_decay, self.dropout = float(weight_decay), float(dropout)
        self.lr, self.epochs, self.batch_size = float(lr), int(epochs), int(batch_size)

    def _network(self, inputs: int):
        import torch

        blocks, size = [], inputs
        for _ in range(self.layers):
            blocks += [torch.nn.Linear(size, self.width), torch.nn.SiLU(), torch.nn.Dropout(self.dropout)]
            size = self.width
        return torch.nn.Sequential(*blocks, torch.nn.Linear(size, 1)).double()

    def fit(self, X, y, val=None, seed: int = 0):
        import torch

        Z = torch.from_numpy(self._fit_scaler(X))
        y = np.asarray(y, dtype=np.float64)
        self.y_mu, self.y_sd = float(y.mean()), float(y.std() or 1.0)
        t = torch.from_numpy((y - self.y_mu) / self.y_sd)
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.net = self._network(Z.shape[1])
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.epochs)
        best = (np.inf, None, 0)
        self.history = []
        for epoch in range(self.epochs):
            self.net.train()
            for batch in torch.randperm(len(Z), generator=generator).split(self.batch_size):
                optimizer.zero_grad()
                loss = torch.nn.functional.l1_loss(self.net(Z[batch]).squeeze(1), t[batch])
                loss.backward()
                optimizer.step()
            schedule.step()
            if val is not None:
                mae = float(np.mean(np.abs(self.predict(val[0]) - np.asarray(val[1]))))
                self.history.append(mae)
                if mae < best[0]:
                    best = (mae, {k: v.clone() for k, v in self.net.state_dict().items()}, epoch + 1)
        if best[1] is not None:
            self.net.load_state_dict(best[1])
        self.best_epoch = best[2] if val is not None else self.epochs
        return self

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything a prediction needs, as plain arrays (for ``np.savez``)."""
        weights = {f'net.{name}': value.numpy() for name, value in self.net.state_dict().items()}
        return {'mu': self.mu, 'sd': self.sd, 'y': np.array([self.y_mu, self.y_sd]), **weights}

    @classmethod
    def from_arrays(cls, arrays: dict, head: MLPHead) -> MLPHead:
        """``head`` (unfitted, with the shape hyper-parameters) given the weights of :meth:`arrays`."""
        import torch

        head.mu, head.sd = arrays['mu'], arrays['sd']
        head.y_mu, head.y_sd = (float(v) for v in arrays['y'])
        head.net = head._network(len(head.mu))
        state = {key[4:]: torch.from_numpy(value) for key, value in arrays.items() if key.startswith('net.')}
        head.net.load_state_dict(state)
        return head

    def predict(self, X) -> np.ndarray:
        import torch

        self.net.eval()
        with torch.no_grad():
            out = self.net(torch.from_numpy(self._scale(X))).squeeze(1).numpy()
        return out * self.y_sd + self.y_mu


HEADS = {'ridge': RidgeHead, 'krr': KernelRidgeHead, 'mlp': MLPHead}

#: The hyper-parameter grid each head's inner CV searches.
GRIDS = {
    'ridge': {'alpha': [0.1, 1.0, 10.0, 100.0, 1000.0]},
    'krr': {'alpha': [0.003, 0.01, 0.03, 0.1, 0.3, 1.0], 'gamma': [0.03, 0.1, 0.3, 1.0]},
    'mlp': {'layers': [1, 2]},
}


def grid(spec: dict[str, Sequence]) -> list[dict]:
    """Every combination of a ``{name: values}`` grid."""
    names = list(spec)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*spec.values())]


def inner_cv_select(
    kind: str,
    X,
    y,
    groups,
    folds: int = 3,
    seed: int = 0,
    spec: dict | None = None,
    fixed: dict | None = None,
) -> tuple[dict, dict]:
    """The hyper-parameters of head ``kind`` with the lowest grouped ``folds``-fold CV MAE (transformed
    space) on ``X``, ``y`` alone (``groups``: reduced formulas, kept whole); returns them and the CV MAE of
    every candidate. An MLP is early-stopped on each inner held-out fold; the mean of its best epochs
    becomes its ``epochs``."""
    from aiida_dielectrics.ml import splits

    X, y = np.asarray(X), np.asarray(y, dtype=float)
    pairs = splits.kfold(list(groups), np.arange(len(y)), folds, seed)
    if kind == 'krr':
        return _select_kernel_ridge(X, y, pairs, spec or GRIDS[kind], fixed)
    scores, chosen = {}, None
    for params in grid(spec or GRIDS[kind]):
        params = {**(fixed or {}), **params}
        maes, epochs = [], []
        for k, (rest, held) in enumerate(pairs):
            head = HEADS[kind](**params).fit(
                X[rest], y[rest], val=(X[held], y[held]) if kind == 'mlp' else None, seed=seed + k
            )
            maes.append(float(np.mean(np.abs(head.predict(X[held]) - y[held]))))
            epochs.append(getattr(head, 'best_epoch', 0))
        mae = float(np.mean(maes))
        scores[repr(sorted(params.items()))] = mae
        if kind == 'mlp':
            params = {**params, 'epochs': max(10, round(float(np.mean(epochs))))}
        if chosen is None or mae < chosen[0]:
            chosen = (mae, params)
    return chosen[1], scores


def _select_kernel_ridge(X, y, pairs, spec: dict, fixed: dict | None) -> tuple[dict, dict]:
    """:func:`inner_cv_select` for :class:`KernelRidgeHead`, all α of one γ from one eigendecomposition of
    the training kernel per fold (the same predictions as fitting each α, at the cost of one)."""
    spec = {**{k: [v] for k, v in (fixed or {}).items()}, **spec}
    alphas, gammas = list(spec['alpha']), list(spec['gamma'])
    errors = {(a, g): [] for a in alphas for g in gammas}
    for rest, held in pairs:
        for gamma in gammas:
            head = KernelRidgeHead(alpha=0.0, gamma=gamma)
            Z = head._fit_scaler(X[rest])
            offset = float(y[rest].mean())
            values, vectors = np.linalg.eigh(head._kernel(Z, Z))
            projected = vectors.T @ (y[rest] - offset)
            K_held = head._kernel(head._scale(X[held]), Z) @ vectors
            for alpha in alphas:
                predicted = K_held @ (projected / (values + alpha)) + offset
                errors[(alpha, gamma)].append(float(np.mean(np.abs(predicted - y[held]))))
    scores = {
        repr(sorted({'alpha': a, 'gamma': g}.items())): float(np.mean(e)) for (a, g), e in errors.items()
    }
    alpha, gamma = min(errors, key=lambda key: np.mean(errors[key]))
    return {'alpha': alpha, 'gamma': gamma}, scores


class HeadEnsemble:
    """``members`` seeds of one head with fixed hyper-parameters; :meth:`predict` gives the mean and the
    (scaled) spread over members in the ORIGINAL space, as :class:`~.ensemble.Ensemble` does."""

    def __init__(self, kind: str, params: dict, members: int = 5, transform: str = 'identity'):
        self.kind, self.params, self.transform = kind, dict(params), transform
        self.count = int(members)
        self.sigma_scale = 1.0

    def fit(self, X, y, val=None, seed: int = 0):
        self.members = [
            HEADS[self.kind](**self.params).fit(X, y, val=val, seed=seed + k) for k in range(self.count)
        ]
        return self

    def predict_transformed(self, X) -> np.ndarray:
        """Member outputs (members × points) in the transformed space."""
        return np.stack([member.predict(X) for member in self.members])

    def calibrate(self, X, y) -> float:
        """Fit the σ scale on held-out ``X``, ``y`` (transformed space), as the ε ensembles do."""
        from aiida_dielectrics.ml.ensemble import fit_sigma_scale

        self.sigma_scale = fit_sigma_scale(self.predict_transformed(X), y) if self.count > 1 else 1.0
        return self.sigma_scale

    def predict(self, X, calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        from aiida_dielectrics.ml.transforms import inverse_transform

        values = inverse_transform(self.transform, self.predict_transformed(X))
        scale = self.sigma_scale if calibrated else 1.0
        return values.mean(axis=0), scale * values.std(axis=0)

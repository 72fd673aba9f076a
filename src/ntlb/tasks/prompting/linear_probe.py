"""Linear-probe baseline: logistic regression on frozen, normalised CLIP image features (CoOp's LP row)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...training import backward


def fit_linear_probe(features: Tensor, labels: Tensor, classes: int, weight_decay: float = 1e-3,
                     steps: int = 200) -> tuple[Tensor, Tensor]:
    """(weights (C, D), bias (C,)) of an L2-regularised softmax regression fitted with L-BFGS."""
    features = features.detach().float()
    weights = torch.zeros(classes, features.shape[1], requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weights.T + bias, labels) + weight_decay * (weights**2).sum()
        backward(loss)
        return loss

    optimizer.step(closure)
    return weights.detach(), bias.detach()


def probe_predict(features: Tensor, weights: Tensor, bias: Tensor, columns: list[int] | None = None) -> Tensor:
    """Predicted class of each feature row; `columns` restricts the choice to a subset of classes."""
    logits = features.float() @ weights.T + bias
    if columns is None:
        return logits.argmax(dim=1)
    return torch.tensor(columns)[logits[:, columns].argmax(dim=1)]

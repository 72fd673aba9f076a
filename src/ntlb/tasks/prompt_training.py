"""Few-shot prompt learning (CoOp) with the explainability loss on the class name; checkpoints and resumes.

Each step encodes the batch's images once and every class prompt once; with expl_weight > 0 the relevance of
all classes for all images comes from one batched backward through the text encoder (SPEC section 4).
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..errors import NtlbError
from ..explain.relevance import clip_scores
from ..io import write_bytes_atomic
from ..losses import class_relevance_rows, explainability_loss, explainability_scores
from ..models.adapter import ClipAdapter
from .folders import FolderDataset, ImageFolder, class_subset
from .prompts import PromptLearner

FORMAT = "ntlb-prompts/1"


@dataclass
class PromptConfig:
    """Everything that defines a prompt-learning run (paper defaults: SGD 0.002, cosine, 50 epochs, batch 32)."""

    n_ctx: int = 16
    position: str = "middle"
    csc: bool = False
    init: str | None = None
    expl_weight: float = 1.0  # lambda; 0 is CoOp. Paper: 1 for ViT-B/16, 3 otherwise
    score: str = "paper"  # S(c) of Eq. 2, or "coop" (released code)
    reduction: str = "paper"  # sum over the other classes, or "released" (mean over B x C)
    also_minimize: bool = True
    start_layer_text: int = 0
    shots: int = 1
    seed: int = 0
    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    augment: bool = True
    model: str | None = None
    pretrained: str | None = None
    classnames: list[str] = field(default_factory=list)


def train_transform(adapter: ClipAdapter, augment: bool):
    """Random resized crop and flip (CoOp's augmentation) at the model's input size, or the plain preprocess."""
    if not augment:
        return adapter.preprocess
    from torchvision import transforms

    c = adapter.preprocess_config
    return transforms.Compose([
        transforms.RandomResizedCrop(c.size, scale=(0.5, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(c.mean, c.std),
    ])


def _learning_rate(epoch: int, config: PromptConfig) -> float:
    if epoch < config.warmup_epochs:
        return config.warmup_lr
    progress = (epoch - config.warmup_epochs) / max(1, config.epochs - config.warmup_epochs)
    return 0.5 * config.lr * (1 + math.cos(math.pi * progress))


def prompt_logits(adapter: ClipAdapter, learner: PromptLearner, image_features: torch.Tensor,
                  keep_from: int | None = None):
    """(scaled logits (B, C), encoded prompts): every class prompt encoded once for the whole batch."""
    prompts = learner.encode(adapter, keep_from)
    return clip_scores(image_features, prompts.features, adapter.logit_scale, "scaled"), prompts


def step_loss(adapter: ClipAdapter, learner: PromptLearner, pixels: torch.Tensor, labels: torch.Tensor,
              config: PromptConfig) -> tuple[torch.Tensor, dict]:
    """Cross-entropy plus lambda times the explainability loss, for one batch."""
    with torch.no_grad():
        image_features = adapter.encode_image(pixels).features
    keep = adapter.resolve_layer(config.start_layer_text, "text") if config.expl_weight > 0 else None
    logits, prompts = prompt_logits(adapter, learner, image_features, keep)
    labels = labels.to(logits.device)
    ce = F.cross_entropy(logits.float(), labels)
    parts = {"ce": float(ce.detach())}
    if config.expl_weight <= 0:
        return ce, parts
    rows = class_relevance_rows(logits, prompts, learner.layout.eot)
    scores = explainability_scores(rows, learner.layout.eot, learner.layout.names, config.score)
    expl = explainability_loss(scores, labels, config.reduction, config.also_minimize)
    parts.update(expl=float(expl.detach()), s_true=float(scores.detach().gather(1, labels[:, None]).mean()))
    return ce + config.expl_weight * expl, parts


def _save(path: Path, learner: PromptLearner, config: PromptConfig, epoch: int, optimizer, history) -> None:
    state = {"format": FORMAT, "config": asdict(config), "ctx": learner.ctx.detach().cpu(), "epoch": epoch,
             "optimizer": optimizer.state_dict(), "history": history}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def read_prompts(path: str | Path) -> dict:
    """A prompts file's state; one-line errors for a missing, foreign or non-finite file."""
    path = Path(path)
    if not path.is_file():
        raise NtlbError(f"prompts file not found: {path}: train one with 'ntlb prompt train --out {path}'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001  (any unreadable file gets the same one-line answer)
        raise NtlbError(f"cannot read prompts file {path}: {type(err).__name__}: is it an ntlb prompts file?") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise NtlbError(f"{path} is not an ntlb prompts file: train one with 'ntlb prompt train'")
    if not torch.isfinite(state["ctx"]).all():
        raise NtlbError(f"{path} has NaN or infinite context vectors: retrain with a lower --lr")
    return state


def load_learner(adapter: ClipAdapter, path: str | Path) -> tuple[PromptLearner, PromptConfig]:
    """The learned prompts of a file, on `adapter`."""
    state = read_prompts(path)
    config = PromptConfig(**state["config"])
    learner = build_learner(adapter, config)
    if learner.ctx.shape != state["ctx"].shape:
        raise NtlbError(f"{path} holds context vectors of shape {tuple(state['ctx'].shape)} but this model needs "
                        f"{tuple(learner.ctx.shape)}: load the model the prompts were trained with ({config.model})")
    with torch.no_grad():
        learner.ctx.copy_(state["ctx"])
    return learner, config


def build_learner(adapter: ClipAdapter, config: PromptConfig) -> PromptLearner:
    return PromptLearner(adapter, config.classnames, config.n_ctx, config.position, config.csc, config.init,
                         config.seed).to(adapter.device)


def train_prompts(adapter: ClipAdapter, data: ImageFolder, out: str | Path, config: PromptConfig,
                  progress: bool = True) -> Path:
    """Learn prompts on `config.shots` images per class of `data`; resumes from `out` when it holds a run."""
    out = Path(out)
    config.classnames = list(data.classnames)
    learner = build_learner(adapter, config)
    optimizer = torch.optim.SGD(learner.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    start, history = 0, []
    if out.is_file():
        state = read_prompts(out)
        if state["config"] != asdict(config):
            changed = [k for k, v in asdict(config).items() if state["config"].get(k) != v]
            raise NtlbError(f"{out} holds a run with other settings ({', '.join(changed)}): use a new --out "
                            "or the same options to resume")
        with torch.no_grad():
            learner.ctx.copy_(state["ctx"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = state["epoch"], state["history"]
    with torch.random.fork_rng():  # augmentations draw from the global generator: seed it, leave it as it was
        torch.manual_seed(config.seed)
        _run(adapter, learner, optimizer, data, out, config, start, history, progress)
    return out


def _run(adapter: ClipAdapter, learner: PromptLearner, optimizer, data: ImageFolder, out: Path,
         config: PromptConfig, start: int, history: list, progress: bool) -> None:
    shots = data.few_shot(config.shots, config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(FolderDataset(shots.samples, train_transform(adapter, config.augment)),
                        batch_size=config.batch_size, shuffle=True, generator=generator)
    for _ in range(start):  # the shuffles and augmentations of a resumed run continue where they stopped
        for _batch in loader:
            pass
    bar = tqdm(range(start, config.epochs), initial=start, total=config.epochs, desc="prompt learning",
               unit="epoch", disable=not progress)
    for epoch in bar:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(epoch, config)
        totals: dict[str, float] = {}
        for pixels, labels in loader:
            loss, parts = step_loss(adapter, learner, pixels, labels, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value / len(loader)
        history.append(totals)
        bar.set_postfix({k: f"{v:.3f}" for k, v in totals.items()})
        _save(out, learner, config, epoch + 1, optimizer, history)


@torch.no_grad()
def dataset_features(adapter: ClipAdapter, data: ImageFolder,
                     batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised image features (N, D), labels (N,)) of every image of a dataset."""
    loader = DataLoader(FolderDataset(data.samples, adapter.preprocess), batch_size=batch_size)
    features, labels = [], []
    for pixels, label in tqdm(loader, desc=f"encoding {data.root.name}", unit="batch", disable=len(loader) < 4):
        features.append(F.normalize(adapter.encode_image(pixels).features.float(), dim=-1).cpu())
        labels.append(label)
    return torch.cat(features), torch.cat(labels)


def accuracy(features: torch.Tensor, labels: torch.Tensor, classifier: torch.Tensor, columns: list[int]) -> float:
    """Accuracy of a (C, D) classifier restricted to `columns` (labels index into the columns)."""
    predicted = (features @ classifier[columns].T.float().cpu()).argmax(dim=1)
    return float((predicted == labels).float().mean())


def evaluate(adapter: ClipAdapter, classifier: torch.Tensor, data: ImageFolder, train_names: list[str]) -> float:
    """Accuracy of a (C, D) classifier of the training classes on `data`, restricted to its classes."""
    columns = class_subset(train_names, data.classnames)
    return accuracy(*dataset_features(adapter, data), classifier, columns)


@torch.no_grad()
def prompt_classifier(adapter: ClipAdapter, learner: PromptLearner) -> torch.Tensor:
    """(C, D) normalised text features of the learned prompts."""
    return F.normalize(learner.encode(adapter).features.float(), dim=-1)

"""Few-shot prompt learning (CoOp) with the explainability loss on the class name; checkpoints and resumes.

Each step encodes the batch's images once and every class prompt once; with expl_weight > 0 the relevance of
all classes for all images comes from the chosen explainer (chefer2021 by default: one batched backward
through the text encoder, SPEC section 4), and the loss is computed from that explanation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..errors import NtlbError
from ..explain import create
from ..explain.base import Explainer
from ..explain.relevance import clip_scores
from ..losses import REDUCTIONS, SCORES, class_name_loss
from ..models.adapter import ClipAdapter
from ..models.features import image_features
from ..models.inputs import ImageFeatures
from ..training import TrainingRun, read_checkpoint, warmup_cosine
from .folders import FolderDataset, ImageFolder, class_subset
from .prompts import POSITIONS, PromptLearner

KIND = "prompts"


@dataclass
class PromptConfig:
    """Everything that defines a prompt-learning run (paper defaults: SGD 0.002, cosine, 50 epochs, batch 32)."""

    n_ctx: int = 16
    position: str = "middle"
    csc: bool = False
    init: str | None = None
    expl_weight: float = 1.0  # lambda; 0 is CoOp. Paper: 1 for ViT-B/16, 3 otherwise
    explainer: str = "chefer2021"  # the explainer whose text relevance the loss is computed from
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

    def __post_init__(self) -> None:
        for name in ("n_ctx", "shots", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise NtlbError(f"{name.replace('_', '-')} = {getattr(self, name)}: use at least 1")
        if self.lr <= 0 or self.expl_weight < 0:
            raise NtlbError(f"lr = {self.lr}, expl-weight = {self.expl_weight}: use lr > 0 and expl-weight >= 0")
        for name, value, allowed in (("position", self.position, POSITIONS), ("score", self.score, SCORES),
                                     ("reduction", self.reduction, REDUCTIONS)):
            if value not in allowed:
                raise NtlbError(f"unknown {name} '{value}': use one of {', '.join(allowed)}")


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


def prompt_explainer(config: PromptConfig) -> Explainer:
    """The explainer whose text relevance feeds the loss (scaled logits, as in the paper)."""
    explainer = create(config.explainer, start_layer_text=config.start_layer_text, logit_mode="scaled")
    if not explainer.gives_text_relevance:
        raise NtlbError(f"explainer '{config.explainer}' gives no text relevance: the class-name loss needs one "
                        "that does (chefer2021, attention, rollout, gradcam)")
    return explainer


def step_loss(adapter: ClipAdapter, learner: PromptLearner, pixels: torch.Tensor, labels: torch.Tensor,
              config: PromptConfig, explainer: Explainer | None = None) -> tuple[torch.Tensor, dict]:
    """Cross-entropy plus lambda times the explainability loss, for one batch."""
    with torch.no_grad():
        features = adapter.encode_image(pixels).features
    labels = labels.to(adapter.device)
    if config.expl_weight <= 0:
        logits = clip_scores(features, learner.encode(adapter).features, adapter.logit_scale, "scaled")
        ce = F.cross_entropy(logits.float(), labels)
        return ce, {"ce": float(ce.detach())}
    explanation = (explainer or prompt_explainer(config))(adapter, ImageFeatures(features), learner.prompts())
    ce = F.cross_entropy(explanation.logits.float(), labels)
    expl, scores = class_name_loss(explanation, learner.layout.names, labels, config.score, config.reduction,
                                   config.also_minimize)
    parts = {"ce": float(ce.detach()), "expl": float(expl.detach()),
             "s_true": float(scores.detach().gather(1, labels[:, None]).mean())}
    return ce + config.expl_weight * expl, parts


def read_prompts(path: str | Path) -> dict:
    """A prompts file's state (its settings, the context vectors); one-line errors for a bad file."""
    return read_checkpoint(path, KIND)


def load_learner(adapter: ClipAdapter, path: str | Path) -> tuple[PromptLearner, PromptConfig]:
    """The learned prompts of a file, on `adapter`."""
    state = read_prompts(path)
    config = PromptConfig(**state["settings"])
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
    if len(data.classnames) < 2:
        raise NtlbError(f"{data.root} has {len(data.classnames)} class: prompt learning tells classes apart, give "
                        "a dataset with at least 2 class folders")
    config.classnames = list(data.classnames)
    shots = data.few_shot(config.shots, config.seed)
    explainer = prompt_explainer(config) if config.expl_weight > 0 else None
    learner = build_learner(adapter, config)
    optimizer = torch.optim.SGD(learner.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    run = TrainingRun(out, KIND, asdict(config), config.epochs, unit="epoch", desc="prompt learning",
                      progress=progress)
    state = run.resume()
    history = []
    if state is not None:
        with torch.no_grad():
            learner.ctx.copy_(state["ctx"])
        optimizer.load_state_dict(state["optimizer"])
        history = state["history"]
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(FolderDataset(shots.samples, train_transform(adapter, config.augment)),
                        batch_size=config.batch_size, shuffle=True, generator=generator)
    with torch.random.fork_rng(), run:  # augmentations draw from the global generator: seed it, restore it after
        torch.manual_seed(config.seed)
        for _ in range(run.saved):  # the shuffles and augmentations of a resumed run continue where they stopped
            for _batch in loader:
                pass
        for epoch in run.steps():
            for group in optimizer.param_groups:
                group["lr"] = warmup_cosine(epoch, config.epochs, config.lr, config.warmup_epochs, config.warmup_lr)
            totals: dict[str, float] = {}
            for pixels, labels in loader:
                loss, parts = step_loss(adapter, learner, pixels, labels, config, explainer)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for key, value in parts.items():
                    totals[key] = totals.get(key, 0.0) + value / len(loader)
            history.append(totals)
            run.report(totals)
            run.save(epoch + 1, ctx=learner.ctx.detach().cpu(), optimizer=optimizer.state_dict(), history=history)
    return Path(out)


def dataset_labels(data: ImageFolder) -> torch.Tensor:
    """The class index of every image of a dataset, in order."""
    return torch.tensor([label for _, label in data.samples])


def dataset_features(adapter: ClipAdapter, data: ImageFolder, batch_size: int = 64) -> torch.Tensor:
    """Normalised features of every image of a dataset (N, D), in order."""
    return image_features(adapter, FolderDataset(data.samples, adapter.preprocess), batch_size,
                          desc=f"encoding {data.root.name}")


def accuracy(features: torch.Tensor, labels: torch.Tensor, classifier: torch.Tensor, columns: list[int]) -> float:
    """Accuracy of a (C, D) classifier restricted to `columns` (labels index into the columns)."""
    predicted = (features.float() @ classifier[columns].to(features.device).T.float()).argmax(dim=1)
    return float((predicted.cpu() == labels.cpu()).float().mean())


def evaluate(adapter: ClipAdapter, classifier: torch.Tensor, data: ImageFolder, train_names: list[str]) -> float:
    """Accuracy of a (C, D) classifier of the training classes on `data`, restricted to its classes."""
    columns = class_subset(train_names, data.classnames)
    return accuracy(dataset_features(adapter, data), dataset_labels(data), classifier, columns)


@torch.no_grad()
def prompt_classifier(adapter: ClipAdapter, learner: PromptLearner) -> torch.Tensor:
    """(C, D) normalised text features of the learned prompts."""
    return F.normalize(learner.encode(adapter).features.float(), dim=-1)


def evaluate_prompts(adapter: ClipAdapter, learner: PromptLearner, folders: list[str | Path], out: str | Path,
                     prompts: str | Path = "") -> dict[str, dict]:
    """Accuracy of learned prompts on each image-folder dataset (a dataset may use a subset of the classes); one
    JSON per dataset in `out`, named after its folder. Returns {folder: result}."""
    from ..io import write_json_atomic
    from .folders import read_image_folder

    classifier = prompt_classifier(adapter, learner)
    results, used = {}, set()
    for folder in folders:
        data = read_image_folder(folder)
        name = Path(folder).resolve().name
        while name in used:
            name = f"{Path(folder).resolve().parent.name}_{name}"
        used.add(name)
        result = {"prompts": str(prompts), "data": str(folder), "accuracy": evaluate(adapter, classifier, data,
                                                                                   learner.classnames),
                  "images": len(data.samples), "classes": len(data.classnames), "file": f"{name}.json"}
        write_json_atomic(Path(out) / f"{name}.json", result)
        results[str(folder)] = result
    return results

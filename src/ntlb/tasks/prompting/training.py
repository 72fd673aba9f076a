"""Few-shot prompt learning (CoOp) with the explainability loss on the class name; checkpoints and resumes.

Each step encodes the batch's images once and every class prompt once; with expl_weight > 0 the relevance of
all classes for all images comes from the chosen explainer (chefer2021 by default: one batched backward
through the text encoder, SPEC section 4), and the loss is computed from that explanation.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ...config import settings as settings_of
from ...config.prompts import PromptConfig
from ...errors import NtlbError
from ...explain import create
from ...explain.base import Explainer
from ...explain.registry import require
from ...explain.relevance import clip_scores
from ...io import load_image
from ...losses import class_name_loss, explainability_scores, explainability_weights
from ...models.adapter import ClipAdapter
from ...models.features import accumulation_dtype, image_features
from ...models.inputs import ImageFeatures, Prompts
from ...training import TrainingRun, backward, read_checkpoint, warmup_cosine
from ..explaining.folders import FolderDataset, ImageFolder, class_subset
from .learner import PromptLearner

KIND = "prompts"


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


def prompt_explainer(config: PromptConfig, max_memory: str | int | None = None) -> Explainer:
    """The explainer whose text relevance feeds the loss (scaled logits, as in the paper); `max_memory` (the run's
    budget of one step) also sizes its own gradient chunks."""
    require(config.explainer, "text relevance", "the class-name loss")
    return create(config.explainer, start_layer_text=config.start_layer_text, logit_mode="scaled",
                  max_memory=max_memory)


def step_gradients(adapter: ClipAdapter, learner: PromptLearner, pixels: torch.Tensor, labels: torch.Tensor,
                   config: PromptConfig, explainer: Explainer | None = None, module: torch.nn.Module | None = None,
                   batch_size: int | None = None, class_chunk: int | None = None, processes: int = 1) -> dict:
    """One step's forward and backward (gradients accumulate in the context vectors): cross-entropy plus lambda
    times the explainability loss over `pixels`, a process's share of a global batch of `batch_size` images
    (default: these alone). `module` is the learner or its DDP wrapper (which averages over `processes`).

    With `class_chunk` < the number of classes, the classes go through the text encoder in chunks, each with its
    own backward: the cross-entropy's gradient enters through its logits (the softmax of all classes' logits,
    computed first without a graph), and the explainability loss is a weighted sum over classes, so the gradients
    add up to those of the whole step, while memory holds one chunk's graph.
    """
    module = module or learner
    with torch.no_grad():
        features = adapter.encode_image(pixels).features
    labels = labels.to(adapter.device)
    total = batch_size or len(labels)
    classes = len(learner.classnames)
    chunk = min(class_chunk or classes, classes)
    explain = config.expl_weight > 0
    explainer = (explainer or prompt_explainer(config)) if explain else None
    weights = (explainability_weights(labels, classes, config.reduction, config.also_minimize, total)
               if explain else None)
    layout = learner.layout
    pieces = [list(range(start, min(start + chunk, classes))) for start in range(0, classes, chunk)]
    gradient_of_ce = None
    if len(pieces) > 1:
        with torch.no_grad():
            logits = clip_scores(features, learner.encode(adapter).features, adapter.logit_scale, "scaled")
            logits = logits.to(accumulation_dtype(logits.dtype))
            ce = F.cross_entropy(logits, labels, reduction="sum") / total
            gradient_of_ce = (logits.softmax(dim=-1) - F.one_hot(labels, classes).to(logits.dtype)) / total
    parts = {"ce": 0.0, "expl": 0.0, "s_true": 0.0} if explain else {"ce": 0.0}
    for number, piece in enumerate(pieces):
        last = number == len(pieces) - 1
        sync = nullcontext() if last or not hasattr(module, "no_sync") else module.no_sync()
        with sync:
            embeddings = module()[piece]
            tokens = learner.tokens.select(piece)
            if explain:
                explanation = explainer(adapter, ImageFeatures(features), Prompts(tokens, embeddings))
                logits = explanation.logits
                expl, scores = class_name_loss(explanation, layout.names[piece], labels, config.score,
                                               weights=weights[:, piece])
            else:
                encoded = adapter.encode_text(layout.ids[piece], layout.eot[piece], embeddings=embeddings)
                logits = clip_scores(features, encoded.features, adapter.logit_scale, "scaled")
                expl = None
            logits = logits.to(accumulation_dtype(logits.dtype))
            if gradient_of_ce is None:
                ce = F.cross_entropy(logits, labels, reduction="sum") / total
                loss = ce
            else:
                loss = (gradient_of_ce[:, piece] * logits).sum()
            if expl is not None:
                loss = loss + config.expl_weight * expl
                parts["expl"] += float(expl.detach())
                in_piece = torch.tensor([label in piece for label in labels.tolist()], device=labels.device)
                if in_piece.any():
                    local = torch.tensor([piece.index(label) for label in labels[in_piece].tolist()],
                                         device=labels.device)
                    parts["s_true"] += float(scores.detach()[in_piece].gather(1, local[:, None]).sum()) / total
            backward(loss * processes)  # DDP averages over the processes: each holds its share of the mean
    parts["ce"] = float(ce.detach())
    return parts


def read_prompts(path: str | Path, finished: bool = True) -> dict:
    """A prompts file's state (its settings, the context vectors); one-line errors for a bad file and (unless
    `finished` is False) for an unfinished run."""
    return read_checkpoint(path, KIND, fix="give the prompts file that 'ntlb prompt train' wrote", finished=finished)


def load_learner(adapter: ClipAdapter, path: str | Path,
                 state: dict | None = None) -> tuple[PromptLearner, PromptConfig]:
    """The learned prompts of a file, on `adapter` (`state`: the file as `read_prompts` gave it, when already read)."""
    state = read_prompts(path) if state is None else state
    config = PromptConfig.from_settings(state["settings"])
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


class ShotImages(Dataset):
    """The shots, each image augmented with its own seed (run seed, epoch, index): the same picture whichever batch
    or process it lands in, so a run split over processes sees exactly what one process sees."""

    def __init__(self, samples: list[tuple[Path, int]], transform, seed: int):
        self.samples, self.transform, self.seed = samples, transform, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        path, label = self.samples[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + index)
            return self.transform(load_image(path)), label


def epoch_batches(count: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of an epoch: a shuffle seeded by (seed, epoch), cut into batches."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    return [order[i : i + batch_size] for i in range(0, count, batch_size)]


def classes_per_chunk(adapter: ClipAdapter, explainer: Explainer | None, learner: PromptLearner, images: int,
                      budget: int | None) -> int:
    """The most class prompts one backward may hold within `budget` bytes (default: half the memory available),
    from the explainer's memory planner."""
    from ...explain.memory import texts_per_call

    keep = explainer.keep_from(adapter, "text") if explainer is not None else None
    return texts_per_call(adapter, images, len(learner.classnames), learner.layout.ids.shape[1], keep, budget)


def train_prompts(adapter: ClipAdapter, data: ImageFolder, out: str | Path, config: PromptConfig,
                  progress: bool = True, workers: int = 0, max_memory: str | None = None) -> Path:
    """Learn prompts on `config.shots` images per class of `data`, written to `out` when finished; until then the
    checkpoint is `out`.partial, which a rerun resumes from. The resources (`progress`, `workers`, the memory
    budget `max_memory` of one step) are not part of the run's settings: a rerun with others resumes.

    Under torchrun each process takes its share of every global batch and the gradients are all-reduced (DDP);
    the first process writes the checkpoints.
    """
    from ...distributed import current_world
    from ...explain.memory import parse_memory

    if len(data.classnames) < 2:
        raise NtlbError(f"{data.root} has {len(data.classnames)} class: prompt learning tells classes apart, give "
                        "a dataset with at least 2 class folders")
    config.classnames = list(data.classnames)
    shots = data.few_shot(config.shots, config.seed)
    world = current_world(adapter.device)
    explainer = prompt_explainer(config, max_memory) if config.expl_weight > 0 else None
    learner = build_learner(adapter, config)
    module = learner
    if world.size > 1:
        module = torch.nn.parallel.DistributedDataParallel(learner)
    optimizer = torch.optim.SGD(learner.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    run = TrainingRun(None, KIND, settings_of(config), config.epochs, unit="epoch", desc="prompt learning",
                      progress=progress and world.main, result=out, writes=world.main)
    state = run.resume()
    history = []
    if state is not None:
        with torch.no_grad():
            learner.ctx.copy_(state["ctx"])
        optimizer.load_state_dict(state["optimizer"])
        history = state["history"]
    images = ShotImages(shots.samples, train_transform(adapter, config.augment), config.seed)
    chunk = classes_per_chunk(adapter, explainer, learner, config.batch_size, parse_memory(max_memory))

    def epoch_step(epoch: int, _) -> dict[str, float]:
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(epoch, config.epochs, config.lr, config.warmup_epochs, config.warmup_lr)
        batches = epoch_batches(len(images), config.batch_size, config.seed, epoch)
        shares = [torch.tensor_split(torch.tensor(batch), world.size)[world.rank].tolist() for batch in batches]
        loader = DataLoader(images, batch_sampler=[[(epoch, i) for i in share] for share in shares],
                            num_workers=workers)
        totals: dict[str, float] = {}
        for batch, (pixels, labels) in zip(batches, loader):
            optimizer.zero_grad(set_to_none=True)
            parts = step_gradients(adapter, learner, pixels, labels, config, explainer, module, len(batch), chunk,
                                   world.size)
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value / len(batches)
            optimizer.step()
        totals = _mean_over_processes(totals, world)
        history.append(totals)
        return totals

    run.loop(epoch_step, lambda: {"ctx": learner.ctx.detach().cpu(), "optimizer": optimizer.state_dict(),
                                  "history": history})
    return Path(out)


def _mean_over_processes(totals: dict[str, float], world) -> dict[str, float]:
    """Each process's loss terms are its share of the global batch's: their sum is the batch's."""
    from ...distributed import sum_over_processes

    summed = sum_over_processes(torch.tensor(list(totals.values()), dtype=torch.float64), world)
    return dict(zip(totals, summed.tolist()))


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


@torch.no_grad()
def class_name_shares(adapter: ClipAdapter, learner: PromptLearner, features: torch.Tensor, labels: torch.Tensor,
                      config: PromptConfig | None = None, batch_size: int = 32) -> torch.Tensor:
    """S(c_gt) of every image (N,): how much of the true class's score rests on its name, the score the loss raises
    (config's explainer and score; the library's by default). `features` (N, D) as from `dataset_features`."""
    config = config or PromptConfig()
    explainer = prompt_explainer(config)
    prompts = learner.prompts()
    shares = []
    for start in range(0, len(features), batch_size):
        images = ImageFeatures(features[start : start + batch_size].to(adapter.device))
        explanation = explainer(adapter, images, prompts)
        scores = explainability_scores(explanation.text, learner.tokens.eot, learner.layout.names, config.score)
        truth = labels[start : start + batch_size, None].to(scores.device)
        shares.append(scores.gather(1, truth)[:, 0].float().cpu())
    return torch.cat(shares)


def evaluate_prompts(adapter: ClipAdapter, learner: PromptLearner, folders: list[str | Path], out: str | Path,
                     prompts: str | Path = "", settings: dict | None = None) -> dict[str, dict]:
    """Accuracy of learned prompts on each image-folder dataset (a dataset may use a subset of the classes); one
    JSON per dataset in `out`, named after its folder, recording the prompts file's `settings` (what defines the
    prompts evaluated; read from `prompts` when not given). Returns {folder: result}."""
    from ...io import write_record
    from ..explaining.folders import read_image_folder

    if settings is None and prompts:
        settings = read_prompts(prompts)["settings"]
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
        write_record(Path(out) / f"{name}.json", result, adapter, settings)
        results[str(folder)] = result
    return results

"""Contrastive training of ntlb's small CLIP on the procedural world: checkpoints, resume, loss curve."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ntlb.config.world import LongRunResources, WorldTrainConfig  # the one declaration of the command's settings
from ntlb.errors import NtlbError
from ntlb.models.loading import CONFIG_DIR, load_model
from ntlb.training import TrainingRun, descend, read_checkpoint, warmup_cosine
from ntlb.world.datasets import WorldCaptions

from .outputs import plot_losses, write_fp16_weights

DEFAULT_CONFIG = CONFIG_DIR / "ntlb-world.json"


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor,
                     captions: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE; pairs with identical captions all count as positives (no false negatives)."""
    logits = scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    ids = {text: i for i, text in enumerate(dict.fromkeys(captions))}
    keys = torch.tensor([ids[c] for c in captions], device=logits.device)
    targets = (keys[:, None] == keys[None, :]).float()
    targets = targets / targets.sum(dim=1, keepdim=True)
    return 0.5 * (torch.sum(-targets * logits.log_softmax(dim=1), dim=1).mean()
                  + torch.sum(-targets * logits.T.log_softmax(dim=1), dim=1).mean())


def train(out: str | Path, steps: int = WorldTrainConfig.steps, batch_size: int = WorldTrainConfig.batch_size,
          lr: float = WorldTrainConfig.lr, warmup: int = WorldTrainConfig.warmup,
          weight_decay: float = WorldTrainConfig.weight_decay,
          checkpoint_every: int = LongRunResources.checkpoint_every, device: str = LongRunResources.device,
          config: str | Path = DEFAULT_CONFIG, max_minutes: float | None = None,
          init: str | Path | None = None, progress: bool = True) -> Path:
    """Train (or resume) a CLIP of `config` on world captions; returns the checkpoint path.

    init: weights (.safetensors/.pt) to start from instead of a random initialisation, to continue training
    a model on a fresh schedule.

    Step s always sees scenes s*batch .. (s+1)*batch-1 of the clip-train seed space, so a resumed run
    continues exactly where it stopped.
    """
    if steps < 1 or batch_size < 1 or checkpoint_every < 1:
        raise NtlbError(f"--steps {steps}, --batch-size {batch_size}, --checkpoint-every {checkpoint_every}: "
                        "use at least 1 each")
    out = Path(out)
    checkpoint = out / "checkpoint.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random initial weights are the point here
        adapter = load_model(str(config), pretrained=None if init is None else str(init), device=device)
    model = adapter.model.train().requires_grad_(True)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=lr)
    settings = {"steps": steps, "batch_size": batch_size, "lr": lr, "warmup": warmup, "weight_decay": weight_decay,
                "config": str(config), "init": None if init is None else str(init)}
    run = TrainingRun(checkpoint, "world-clip", settings, steps, desc="training", progress=progress)
    state = run.resume(map_location=device)
    losses = []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        losses = state["losses"]
    data = WorldCaptions((steps - run.saved) * batch_size, adapter.preprocess, offset=run.saved * batch_size)
    batches = DataLoader(data, batch_size=batch_size, num_workers=1, prefetch_factor=4)

    def step(number: int, batch) -> dict[str, float]:
        images, captions = batch
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(number, steps, lr, warmup)
        tokens = adapter.tokenizer(list(captions)).truncated()
        image_features = adapter.encode_image(images).features
        text_features = adapter.encode_text(tokens.ids, tokens.eot).features
        loss = contrastive_loss(image_features, text_features, model.logit_scale.exp(), list(captions))
        descend(optimizer, loss)
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        return {"loss": losses[-1], "scale": float(model.logit_scale.detach().exp())}

    run.loop(step, lambda: {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "losses": losses},
             every=checkpoint_every, max_minutes=max_minutes, data=batches,
             before_save=lambda done: plot_losses({"": losses}, out / "loss.png", "contrastive loss", steps=True))
    return checkpoint


def export_weights(checkpoint: str | Path, path: str | Path) -> Path:
    """The model weights of a training checkpoint as an fp16 safetensors file (what the package ships)."""
    return write_fp16_weights(read_checkpoint(checkpoint, "world-clip")["model"], path)

"""Training the world's image generator: a small VQGAN of taming's own modules on world scenes at 64 px
(`ntlb world train-generator`), with checkpoints, resume, a loss plot, and the fp16 export that ntlb ships as
"world-vqgan". Its model card figures (reconstruction error, objects the exact detector still finds) come from
`reconstruction_report`.

Losses: L1 weighted towards object pixels (the small shapes' corners are what a plain L1 loses first), taming's
codebook + commitment loss, and optionally taming's PatchGAN discriminator with the hinge loss (no LPIPS: no
perceptual weights exist offline). Codes unused for a while are restarted on encoder outputs of the batch.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from ntlb.config.world import GeneratorTrainResources, VQGANTrainConfig
from ntlb.errors import NtlbError
from ntlb.generators.vqgan import VQGAN, VQGAN_EXTRA, vqgan_config_text
from ntlb.io import write_bytes_atomic, write_text_atomic
from ntlb.training import TrainingRun, descend, read_checkpoint, warmup_cosine
from ntlb.world.datasets import WorldScenes

from .outputs import plot_losses, write_fp16_weights

KIND = "world-vqgan"


def weighted_l1(reconstruction: torch.Tensor, image: torch.Tensor, objects: torch.Tensor,
                weight: float) -> torch.Tensor:
    """Mean absolute error with object pixels (and a one-pixel rim around them) counted 1 + weight times."""
    rim = F.max_pool2d(objects, 3, stride=1, padding=1)
    weights = 1 + weight * rim
    return ((reconstruction - image).abs() * weights).sum() / (weights.sum() * image.shape[1])


def _discriminator():
    try:
        from taming.modules.discriminator.model import NLayerDiscriminator, weights_init
    except ImportError:
        raise NtlbError(VQGAN_EXTRA) from None

    return NLayerDiscriminator(input_nc=3, ndf=32, n_layers=2).apply(weights_init)


def _restart_dead_codes(model: VQGAN, usage: torch.Tensor, latents: torch.Tensor, step: int) -> int:
    """Codes no image used since the last restart are moved onto random encoder outputs of this batch (drawn with
    the step as seed, so a resumed run restarts the same codes)."""
    dead = (usage == 0).nonzero().flatten()
    if len(dead):
        flat = latents.detach().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        picks = torch.randint(len(flat), (len(dead),), generator=torch.Generator().manual_seed(step))
        with torch.no_grad():
            model.codebook[dead] = flat[picks].to(model.codebook)
    usage.zero_()
    return len(dead)


def train_world_vqgan(out: str | Path, config: VQGANTrainConfig, device: str = GeneratorTrainResources.device,
                      max_minutes: float | None = None,
                      checkpoint_every: int = GeneratorTrainResources.checkpoint_every, progress: bool = True) -> Path:
    """Train (or resume) the world VQGAN; returns the checkpoint path. Step s always sees scenes s*batch ..
    (s+1)*batch-1 of the clip-train seed space, so a resumed run continues exactly where it stopped."""
    out = Path(out)
    torch.manual_seed(0)
    model = VQGAN(config.params(), beta=config.beta)
    if config.init is not None:  # continue an earlier model on a fresh schedule
        from ntlb.models.loading import read_state_dict

        start = read_checkpoint(config.init, KIND)["model"] if str(config.init).endswith(".pt") else \
            read_state_dict(config.init)
        model.load_state_dict({k: v.float() for k, v in start.items()})
    model = model.to(device).train()
    discriminator = _discriminator().to(device).train() if config.adversarial_weight > 0 else None
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.5, 0.9))
    d_optimizer = (torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=(0.5, 0.9))
                   if discriminator is not None else None)
    run = TrainingRun(out / "checkpoint.pt", KIND, asdict(config), config.steps, desc="world VQGAN",
                      progress=progress)
    state = run.resume(map_location=device)
    history: list[dict] = []
    usage = torch.zeros(config.n_embed, dtype=torch.long)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if discriminator is not None:
            discriminator.load_state_dict(state["discriminator"])
            d_optimizer.load_state_dict(state["d_optimizer"])
        history, usage = state["history"], state["usage"]
    data = WorldScenes((config.steps - run.saved) * config.batch_size, offset=run.saved * config.batch_size,
                       size=config.size)
    batches = DataLoader(data, batch_size=config.batch_size, num_workers=1, prefetch_factor=4)

    def step(number: int, batch) -> dict[str, float]:
        images, objects = (t.to(device) for t in batch)
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(number, config.steps, config.lr, config.warmup)
        latents = model.encode(images)
        quantized, codebook_loss, (_, _, codes) = model.quantize(latents)
        reconstruction = model.decode(quantized)
        l1 = weighted_l1(reconstruction, images, objects, config.object_weight)
        loss = l1 + codebook_loss
        parts = {"l1": float(l1.detach()), "codebook": float(codebook_loss.detach())}
        adversarial = discriminator is not None and number >= config.adversarial_start
        if adversarial:
            generator_loss = -discriminator(reconstruction * 2 - 1).mean()
            loss = loss + config.adversarial_weight * generator_loss
            parts["generator"] = float(generator_loss.detach())
        descend(optimizer, loss)
        if adversarial:  # hinge loss of taming's PatchGAN
            real = discriminator(images * 2 - 1)
            fake = discriminator(reconstruction.detach() * 2 - 1)
            d_loss = 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
            descend(d_optimizer, d_loss)
            parts["discriminator"] = float(d_loss.detach())
        usage.add_(torch.bincount(codes.flatten().cpu(), minlength=config.n_embed))
        done = number + 1
        if done % config.restart_every == 0 and done < config.steps:
            parts["restarted"] = _restart_dead_codes(model, usage, latents, done)
        history.append(parts)
        return {k: v for k, v in parts.items() if k in ("l1", "codebook")}

    def state() -> dict:
        extra = ({"discriminator": discriminator.state_dict(), "d_optimizer": d_optimizer.state_dict()}
                 if discriminator is not None else {})
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history,
                "usage": usage, **extra}

    run.loop(step, state, every=checkpoint_every, max_minutes=max_minutes, data=batches,
             before_save=lambda done: plot_losses({key: [h[key] for h in history] for key in ("l1", "codebook")},
                                                  out / "loss.png"))
    return out / "checkpoint.pt"


def export_world_vqgan(checkpoint: str | Path, folder: str | Path, name: str = "world-vqgan") -> tuple[Path, Path]:
    """The checkpoint's model as (taming YAML config, fp16 safetensors weights) in `folder`: what ntlb ships, and
    what `--generator vqgan --vqgan-config --vqgan-checkpoint` (or taming's VQModel) reads."""

    from ntlb.generators.vqgan import load_vqgan

    state = read_checkpoint(checkpoint, KIND)
    settings = VQGANTrainConfig(**state["settings"])  # the architecture of the run
    folder = Path(folder)
    config = write_text_atomic(folder / f"{name}.yaml", vqgan_config_text(settings.params()))
    weights = write_fp16_weights(state["model"], folder / f"{name}.safetensors")
    export_latent_bank(load_vqgan(config, weights), folder / f"{name}-bank.safetensors", size=settings.size)
    return config, weights


def world_scene_codes(model: VQGAN, count: int, size: int = 64, space: str = "train", batch_size: int = 32) -> Tensor:
    """Code indices (count, size/f, size/f) of the encodings of the first `count` scenes of a world seed space (the
    world's own mix of 1-4 objects): where generation starts from, instead of random codes."""
    import numpy as np

    from ntlb.world.datasets import scene_seed
    from ntlb.world.scene import random_scene, render

    parameter = next(model.parameters())
    codes = []
    for start in range(0, count, batch_size):
        pictures = np.stack([render(random_scene(scene_seed(space, i)), size)[0]
                             for i in range(start, min(count, start + batch_size))])
        images = torch.from_numpy(pictures).permute(0, 3, 1, 2).to(parameter) / 255
        with torch.no_grad():
            codes.append(model.nearest_codes(model.encode(images)).cpu())
    return torch.cat(codes)


def export_latent_bank(model: VQGAN, path: str | Path, count: int = 256, size: int = 64) -> Path:
    """The bank of `world_scene_codes` (int16) as .safetensors: what world-vqgan's `sample_latent` draws from."""
    from safetensors.torch import save

    codes = world_scene_codes(model, count, size).to(torch.int16).contiguous()
    return write_bytes_atomic(Path(path), save({"codes": codes}))


def calibrate_l2(adapter, generator, count: int = 128, space: str = "train") -> dict:
    """The l2 weight that suits a world generator's latent (what world-vqgan's `l2_weight` holds): the mean CLIP gain
    (in 1 - cos) of a world scene's own caption over the captions of unrelated scenes, divided by the mean squared
    distance between the latents (`generator.encode`) of two unrelated scenes. Under it, moving the latent to a
    matching scene as far away as an unrelated one costs on average what it gains; StyleCLIP's 0.008 was set for
    StyleGAN's W+, where edits are short moves. Returns {"gain", "distance", "l2", "scenes"}."""
    import numpy as np

    from ntlb.models.inputs import prepare_texts
    from ntlb.world.datasets import captioned_sample

    samples = [captioned_sample(i, space, size=generator.size[0]) for i in range(count)]
    pictures = np.stack([np.asarray(sample.image) for sample in samples])
    with torch.no_grad():
        latents = generator.encode(torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255)
        images = generator.image_of(latents)
        tokens = prepare_texts(adapter, [sample.caption.text for sample in samples])
        texts = F.normalize(adapter.encode_text(tokens.ids, tokens.eot).features.float(), dim=-1)
        pixels = adapter.normalize(images.to(adapter.dtype))
        features = F.normalize(adapter.encode_image(pixels).features.float(), dim=-1)
    cosine = features @ texts.T  # (image, text)
    own = cosine.diag()
    others = (cosine.sum(dim=0) - own) / (count - 1)  # each caption against the other scenes
    apart = ~torch.eye(count, dtype=torch.bool)
    distance = torch.cdist(latents.flatten(1).double(), latents.flatten(1).double()).pow(2)[apart].mean()
    gain = float((own - others).mean())
    return {"gain": gain, "distance": float(distance), "l2": gain / float(distance), "scenes": count}


def reconstruction_report(model: VQGAN, count: int = 200, size: int = 64, batch_size: int = 25,
                          progress: bool = True) -> dict:
    """The generator's model-card figures on `count` held-out scenes (test seed space): L1 of the reconstructions
    (pixels in [0, 1]), and the share of objects the exact world detector finds with the right colour and shape and a
    box IoU >= 0.5, on the original renders and on the reconstructions, overall and by object size."""
    import numpy as np
    from tqdm import tqdm

    from ntlb.metrics.boxes import box_iou
    from ntlb.world.datasets import scene_seed
    from ntlb.world.detector import WorldDetector
    from ntlb.world.scene import box_of, random_scene, render

    detector = WorldDetector()
    found = {"original": {"all": [], "small": [], "large": []}, "reconstruction": {"all": [], "small": [], "large": []}}
    errors = []
    model = model.eval()
    for start in tqdm(range(0, count, batch_size), desc="reconstructing", unit="batch", disable=not progress):
        scenes = [random_scene(scene_seed("test", i)) for i in range(start, min(count, start + batch_size))]
        rendered = [render(scene, size) for scene in scenes]
        images = torch.from_numpy(np.stack([r[0] for r in rendered])).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            parameter = next(model.parameters())
            reconstructions = model.decode(model.snap(model.encode(images.to(parameter)))).clamp(0, 1).float().cpu()
        errors.append((reconstructions - images).abs().mean(dim=(1, 2, 3)))
        for scene, (_, masks), original, rebuilt in zip(scenes, rendered, images, reconstructions):
            for which, picture in (("original", original), ("reconstruction", rebuilt)):
                detections = detector(picture)
                for obj, mask in zip(scene.objects, masks):
                    box = box_of(mask)
                    if box is None:
                        continue
                    label = f"{obj.colour} {obj.shape}"
                    hit = any(d.label == label and box_iou(d.box, box) >= 0.5 for d in detections)
                    for key in ("all", obj.size):
                        found[which][key].append(hit)
    share = {which: {key: float(np.mean(hits)) if hits else float("nan") for key, hits in groups.items()}
             for which, groups in found.items()}
    share["objects"] = {key: len(hits) for key, hits in found["original"].items()}
    share["l1"] = float(torch.cat(errors).mean())
    share["ratio"] = share["reconstruction"]["all"] / share["original"]["all"]
    return share

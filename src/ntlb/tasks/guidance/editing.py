"""Text-guided image editing with the semantic-word loss (paper section 3.3, Eq. 3; SPEC 5) and multi-word
text-to-image guidance (the supplementary's compound nouns, FuseDream's explainability term; SPEC 5b).

Editing is StyleCLIP's latent optimisation started from the picture's latent, plus -lambda x a word score of the
semantic words (the paper's: their mean relevance; the default, "deletion": a soft minimum over the words of what
each adds to the cosine, which sees a missing word; losses/semantic_words.py):
`L = (1 - CLIP(G(z), t) / 100) + l2 ||z - z0||^2 + id (1 - identity) - lambda score(S)`.
StyleCLIP divides the scaled score by 100 because OpenAI's CLIP has logit scale 100, so the term is 1 - cos; ntlb
divides by the model's own logit scale, so the term is 1 - cos for every CLIP (the bundled world model's is ~25).
The automatic lambda (the paper's rule) runs lambda = 0, 0.5, ..., 3.5 and keeps the result CLIP scores highest;
the runs are independent, so they go as one optimisation over a batch of latents (one image encoding and one
explainer call per step for all of them); a sampling generator (world-render) draws `EditConfig.sweep_samples`
pictures per lambda in the sweep (2 of its 8: the sweep then costs about 2x one run, not 7x; 0 keeps its own).
The word term needs only the image's features (text attention does not see the image; the score reaches it through
the features), so each step encodes the images once and the explainer takes their features, with
`create_graph=True` so that the word term has a gradient to the image. A word score that reads no relevance (the
default, "deletion") runs no explainer at all: the text's score and the scores of the text without each word come
from the same features and the texts' features, one matrix product (`WordTerm.scores`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ...config import settings as settings_of
from ...config.guidance import EditConfig, GenerateConfig
from ...errors import NtlbError
from ...explain import create
from ...explain.base import Explainer
from ...explain.explanation import Explanation
from ...explain.registry import require
from ...explain.relevance import clip_scores
from ...generators import l2_weight, picture_tensor
from ...io import save_image_atomic, write_record
from ...losses.semantic_words import (
    content_words,
    deletion_word_scores,
    neglected_words,
    reference_word_shares,
    semantic_word_loss,
    word_token_masks,
)
from ...models.adapter import ClipAdapter
from ...models.features import features_without_words
from ...models.inputs import ImageFeatures, prepare_texts
from ...training import descend
from ...world.detector import found_objects
from .optimisation import optimise, styleclip_lr, to_picture


def word_explainer(name: str, logit_mode: str) -> Explainer:
    """The explainer of the word term: every text layer, `create_graph=True` (the term's gradient to the image
    runs through the attention gradients)."""
    require(name, "text relevance", "the semantic-word loss")
    return create(name, logit_mode=logit_mode, create_graph=True)


def semantic_words(adapter: ClipAdapter, text: str, words: list[str] | None, neglected_only: bool = False,
                   picture: Tensor | None = None, explainer: str = "chefer2021") -> list[str]:
    """The words the loss keeps relevant: the given ones, else the content words of the text; with
    `neglected_only`, only those whose relevance for `picture` (scaled score, / sum then / max) is below 0.7."""
    tokens = prepare_texts(adapter, [text])
    chosen = list(words) if words else content_words(text, tokens)
    word_token_masks(tokens, [chosen])  # every word must be in the text: one line otherwise
    if neglected_only:
        if picture is None:
            raise NtlbError("neglected words are measured on a picture: give one")
        with torch.no_grad():
            explanation = create(explainer)(adapter, adapter.normalize(picture), [text])
        chosen = neglected_words(explanation, 0, 0, chosen)
        if not chosen:
            raise NtlbError(f"no word of {text!r} is neglected (all >= 0.7 of the top word): drop --neglected-only")
    return chosen


class WordTerm:
    """The semantic-word loss of one text as the guidance loops use it, with the inputs a grounded score needs
    beyond one explanation, computed once: "contrast", the words' shares on fixed reference world scenes;
    "deletion", the text features of the text without each word (each step then scores the images against them,
    one matrix product). A score that reads no relevance ("deletion": `explains` is False) needs no explainer at
    all: `scores` gives the text's score and the word term from the image features alone."""

    def __init__(self, adapter: ClipAdapter, text: str, words: list[str], variant: str, normalize: str,
                 explainer: str, logit_mode: str) -> None:
        tokens = prepare_texts(adapter, [text])
        self.adapter, self.variant, self.normalize, self.logit_mode = adapter, variant, normalize, logit_mode
        self.masks = word_token_masks(tokens, [words])
        self.reference = self.dropped = self.texts = None
        if variant == "contrast":
            from ...world.datasets import reference_pictures

            self.reference = reference_word_shares(create(explainer, logit_mode=logit_mode), adapter,
                                                   reference_pictures(), [text], self.masks, normalize)
        if variant == "deletion":
            # the text, then the text without each word
            self.texts, self.dropped = features_without_words(adapter, [text], [words])

    @property
    def explains(self) -> bool:
        """Whether the score reads an explanation's relevance (every score but "deletion")."""
        return self.variant != "deletion"

    def _logits(self, features: Tensor, texts: Tensor) -> Tensor:
        return clip_scores(features, texts.to(features), self.adapter.logit_scale, self.logit_mode,
                           self.adapter.logit_bias)

    def __call__(self, explanation: Explanation, features: Tensor) -> Tensor:
        """-score (B, K) of an explanation of the text (column 0) for images whose features are `features`."""
        if self.texts is not None:
            extra = self._logits(features, self.texts[1:])
            explanation = replace(explanation, logits=torch.cat([explanation.logits, extra], dim=1))
        return semantic_word_loss(explanation, self.masks, self.variant, self.normalize, self.reference,
                                  self.dropped)

    def scores(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(the text's score (B,) in the term's logit mode, -word score (B,)) of images whose features are
        `features`, without an explainer: for a term that does not `explains` (one matrix product)."""
        if self.explains:
            raise NtlbError(f"the '{self.variant}' word score reads relevance: it needs an explanation")
        logits = self._logits(features, self.texts)  # (B, 1 + W)
        cosine = logits / self.adapter.logit_scale if self.logit_mode == "scaled" else logits
        slots = self.dropped[0].to(logits.device)
        chosen = self.masks[0].to(logits.device).any(dim=-1) & (slots >= 0)
        words = deletion_word_scores(cosine[:, 0], cosine[:, slots.clamp_min(0)], chosen)
        return logits[:, 0], -words

    def evaluate(self, explainer: Explainer, features: Tensor, tokens) -> tuple[Tensor, Tensor]:
        """(the text's score (B,), -word score (B,)) of images whose features are `features`: through `explainer`
        where the score reads relevance, else from the features alone (`scores`: no explainer, no second-order
        graph)."""
        if not self.explains:
            return self.scores(features)
        explanation = explainer(self.adapter, ImageFeatures(features), tokens)
        return explanation.logits[:, 0], self(explanation, features)[:, 0]


def _features(adapter: ClipAdapter, images: Tensor) -> Tensor:
    return adapter.encode_image(adapter.normalize(images.to(adapter.dtype))).features


def word_report(adapter: ClipAdapter, images: Tensor, text: str, explainer: str = "chefer2021") -> list[dict]:
    """Per image: the scaled CLIP score and each word's relevance ("visual"), from one explainer call."""
    with torch.no_grad():
        explanation = create(explainer)(adapter, adapter.normalize(images.to(adapter.dtype)), [text])
    return [{"clip": explanation.logit(b, 0), "words": [[w, round(r, 4)] for w, r in explanation.words(b, 0)]}
            for b in range(images.shape[0])]


def invert(generator: nn.Module, image: Tensor, steps: int, lr: float = 0.05) -> Tensor:
    """A latent whose image matches `image` (L1), by optimisation: for generators without an encoder."""
    latent = generator.latent.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=lr)
    for _ in range(steps):
        descend(optimizer, (generator.image_of(latent) - image).abs().mean())
    return latent.detach()


def start_latent(generator: nn.Module, image: Tensor, invert_steps: int) -> Tensor:
    """z0: the generator's encoding of the image, or an optimised inversion where it has no encoder (a generator
    that reads only some pictures, world-render, refuses the others first: `check_picture`)."""
    if hasattr(generator, "check_picture"):
        return generator.encode(image)  # its encoder checks the picture first, and its refusal is the answer
    try:
        return generator.encode(image)
    except NtlbError:
        if not hasattr(generator, "image_of"):
            raise
        return invert(generator, image, invert_steps)


def world_picture_notes(generator: nn.Module, pictures: list) -> list[str]:
    """A note for each picture given to a world generator (world-render, world-vqgan) that is not a world scene:
    it will be read as one (world-render's encoder refuses it with an error of its own)."""
    from ...world.detector import looks_like_world_scene

    name = getattr(generator, "name", "") or ""
    if not name.startswith("world"):
        return []
    outside = [i for i, p in enumerate(pictures) if isinstance(p, Image.Image) and not looks_like_world_scene(p)]
    return [f"picture {i + 1} ({pictures[i].width}x{pictures[i].height}) is not a scene of ntlb's world: {name} "
            f"redraws it as {generator.size[1]}x{generator.size[0]} coloured shapes" for i in outside]


def per_picture(values: Tensor, count: int) -> Tensor:
    """Per-latent values (B,) repeated for the `count` pictures a generator draws (count / B per latent)."""
    return values.repeat_interleave(count // values.shape[0]) if values.ndim else values


def _latent_generator(generator: nn.Module, purpose: str) -> None:
    if not isinstance(getattr(generator, "latent", None), nn.Parameter) or not hasattr(generator, "image_of"):
        raise NtlbError(f"{purpose} needs a generator with a latent (world-render, world-vqgan, vqgan or a "
                        "module); the pixels generator has none")


def edit(adapter: ClipAdapter, generator: nn.Module, picture: Image.Image | Tensor, text: str, out: str | Path,
         config: EditConfig, words: list[str] | None = None, neglected_only: bool = False, identity=None,
         progress: bool = True) -> dict:
    """Edit `picture` towards `text` (what `ntlb edit` runs); resumes from out/checkpoint.pt. Writes edited.png
    (the picture's size), compare.png (input, lambda = 0, the chosen lambda, with their words), metrics.json and
    snapshots/ (one column per lambda). `identity(images, original) -> (N,)` similarities replaces the default
    CLIP image-image cosine. Returns the metrics, with the final images under "images"."""
    from ...viz.words import words_panel

    _latent_generator(generator, "editing")
    if hasattr(generator, "check_text"):
        generator.check_text(text)  # a colour or shape the world does not draw: one line, before anything runs
    notes = world_picture_notes(generator, [picture])
    out = Path(out)
    size = tuple(generator.size)
    original = picture_tensor(picture, size).to(adapter.device, next(generator.parameters()).dtype)
    chosen = semantic_words(adapter, text, words, neglected_only, original, config.explainer)
    tokens = prepare_texts(adapter, [text])
    lambdas = torch.tensor(config.expl_weights(), device=adapter.device)
    z0 = start_latent(generator, original, config.invert_steps)
    if config.expl_weight is None and config.sweep_samples and hasattr(generator, "samples"):
        generator.samples = config.sweep_samples  # the sweep's cheaper estimate (EditConfig.sweep_samples)
    slots = generator.pin_for_edit(z0, text) if hasattr(generator, "pin_for_edit") else None
    generator.latent = nn.Parameter(z0.repeat(len(lambdas), *[1] * (z0.ndim - 1)))
    explainer = word_explainer(config.explainer, "scaled")
    term = WordTerm(adapter, text, chosen, config.word_score, "visual", config.explainer, "scaled")
    l2 = l2_weight(generator) if config.l2 is None else config.l2
    with torch.no_grad():
        reference = F.normalize(_features(adapter, original), dim=-1)

    def loss(images: Tensor, step: int) -> tuple[Tensor, dict]:
        features = _features(adapter, images)
        clip, words = term.evaluate(explainer, features, tokens)
        total = (1 - clip / adapter.logit_scale) + per_picture(lambdas, len(images)) * words  # 1 - cos
        keep = generator.keep_cost(generator.latent, z0) if hasattr(generator, "keep_cost") else \
            l2 * (generator.latent - z0).pow(2).flatten(1).sum(dim=1)  # the generator's own, or l2
        total = total + per_picture(keep, len(images))
        if config.identity_weight:
            similar = (F.normalize(features, dim=-1) @ reference.T)[:, 0] if identity is None else \
                identity(images, original)
            total = total + config.identity_weight * (1 - similar)
        return total, {"clip": float(clip.detach().mean()), "words": float(-words.detach().mean())}

    settings = {**settings_of(config), "l2": l2, "text": text, "words": chosen,
                "expl_weights": list(config.expl_weights())}
    images, history = optimise(generator, loss, out, "edit", settings, config.steps, config.lr, config.seed,
                               config.snapshot_every, lambda step: styleclip_lr(step, config.steps, config.lr),
                               desc=f"editing ({len(lambdas)} lambda)", progress=progress)
    before = word_report(adapter, original, text, config.explainer)[0]
    after = word_report(adapter, images, text, config.explainer)
    best = max(range(len(lambdas)), key=lambda i: after[i]["clip"]) if config.expl_weight is None else len(lambdas) - 1
    edited = to_picture(images[best : best + 1])
    target_size = picture.size if isinstance(picture, Image.Image) else (size[1], size[0])
    found = [found_objects(image, text) for image in (images[0], images[best])]
    panels = [("input", original[0], before, ""), ("lambda = 0", images[0], after[0], _found_short(found[0])),
              (f"ntlb, lambda = {float(lambdas[best]):g}", images[best], after[best], _found_short(found[1]))]
    words_panel([(to_picture(image[None]).resize(target_size, Image.BICUBIC),
                  f"{title}: CLIP {report['clip']:.1f}{mark}", report["words"])
                 for title, image, report, mark in panels], out / "compare.png")
    save_image_atomic(out / "edited.png", edited.resize(target_size, Image.BICUBIC))
    metrics = {"text": text, "semantic_words": chosen, "word_score": config.word_score, "world_detector": found[1],
               "world_detector_expl_weight_0": found[0], "slots": slots, "notes": notes,
               "chosen_expl_weight": float(lambdas[best]), "automatic": config.expl_weight is None,
               "before": before, "after": after[best],
               "expl_weights": [{"expl_weight": float(value), **report}
                                for value, report in zip(lambdas.tolist(), after)],
               "final_loss": history[-1]["loss"] if history else None,
               "refinement": getattr(generator, "refined", None)}  # what the discrete refinement changed, per lambda
    metrics = write_record(out / "metrics.json", metrics, adapter, settings)
    return {**metrics, "images": images.detach()}


def generate_from_text(adapter: ClipAdapter, generator: nn.Module, text: str, out: str | Path,
                       config: GenerateConfig, words: list[str] | None = None, progress: bool = True) -> dict:
    """An image for a multi-word text from the generator's random latents (what `ntlb generate` runs): the best of
    `candidates` latents by cos (+ lambda x word score for ntlb), then Adam on -cos (- lambda x word score) over
    augmented views, the word score on the cosine score, relevance / sum then / max, max per word, mean over
    words. Resumes; writes image.png, metrics.json (words before and after) and snapshots/."""
    from ..layouts.generation import augmenter

    _latent_generator(generator, "text-to-image guidance")
    if hasattr(generator, "check_text"):
        generator.check_text(text)
    out = Path(out)
    tokens = prepare_texts(adapter, [text])
    chosen = semantic_words(adapter, text, words)
    explainer = word_explainer(config.explainer, "cosine")
    weight = config.expl_weight if config.method == "ntlb" else 0.0
    term = WordTerm(adapter, text, chosen, config.word_score, "max", config.explainer, "cosine")

    if not weight:  # CLIP alone: no explanation is needed, only the text's embedding
        with torch.no_grad():
            text_embedding = adapter.encode_text(tokens.ids, tokens.eot).features

    def guidance(features: Tensor) -> tuple[Tensor, Tensor]:
        """(cosine, semantic-word loss) of each view's features (the loss 0 when its weight is 0)."""
        if not weight:
            cosine = clip_scores(features, text_embedding, adapter.logit_scale, "cosine")[:, 0]
            return cosine, torch.zeros_like(cosine)
        return term.evaluate(explainer, features, tokens)

    settings = {**settings_of(config), "text": text, "words": chosen}
    generator.latent.data = _best_start(adapter, generator, guidance, weight, config)  # seeded
    augment = augmenter(tuple(generator.size), masks=False)

    def loss(images: Tensor, step: int) -> tuple[Tensor, dict]:
        count = config.views if len(images) == 1 else 1  # a sampling generator's pictures are its views
        views = augment(images.repeat_interleave(count, dim=0))
        cosine, words = guidance(_features(adapter, views))
        total = (-cosine + weight * words).reshape(len(images), count).mean(dim=1)
        return total, {"cosine": float(cosine.detach().mean()), "words": float(-words.detach().mean())}

    with torch.no_grad():
        start = generator()
    images, _ = optimise(generator, loss, out, "generate", settings, config.steps, config.lr, config.seed,
                         config.snapshot_every, desc=f"generating ({config.method})", progress=progress)
    save_image_atomic(out / "image.png", to_picture(images))
    before, after = word_report(adapter, torch.cat([start, images]), text, config.explainer)
    metrics = {"text": text, "method": config.method, "semantic_words": chosen, "before": before, "after": after,
               "world_detector": found_objects(images[0], text), "refinement": getattr(generator, "refined", None)}
    metrics = write_record(out / "metrics.json", metrics, adapter, settings)
    return {**metrics, "images": images.detach()}


def _found_short(report: dict) -> str:
    """ "; found: red circle; missing: green square" for a picture's title ("" where no world object is asked)."""
    found = [r["object"] for r in report["objects"] if r["found"]]
    missing = [r["object"] for r in report["objects"] if not r["found"]]
    return "".join(f"; {kind}: {', '.join(names)}" for kind, names in (("found", found), ("missing", missing))
                   if names)


def _best_start(adapter: ClipAdapter, generator: nn.Module, guidance, weight: float, config: GenerateConfig,
                batch: int = 8) -> Tensor:
    """The start latent (of `candidates`, by seed) whose image ranks best by cos + weight x word score (FuseDream's
    ranking of its initial basis, drawn from its GAN's samples): drawn by the generator's `sample_latent` (world-vqgan:
    encoded world scenes), else its `random_latent`."""
    if config.candidates == 1:
        return generator.latent.data
    draw = getattr(generator, "sample_latent", None) or getattr(generator, "random_latent", None)
    if draw is None:
        raise NtlbError("this generator cannot draw random latents: use --candidates 1")
    latents = torch.cat([draw(config.seed * 10007 + c) for c in range(config.candidates)])
    ranks = []
    for start in range(0, len(latents), batch):
        with torch.no_grad():
            features = _features(adapter, generator.image_of(latents[start : start + batch]))
            cosine, words = guidance(features)
        ranks.append(cosine - weight * words)
    return latents[int(torch.cat(ranks).argmax())][None].clone()

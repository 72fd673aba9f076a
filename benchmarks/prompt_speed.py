"""Time per prompt-learning step: ntlb's method against CoOp and against the reference algorithm as released.

    python benchmarks/prompt_speed.py [--classes 100] [--batch 8] [--reference-classes 10] [--device cpu]

Random-weight ViT-B/32 at 224 px, M=16 context vectors, class name in the middle, lambda=1. The reference
re-encodes the image once per class and per image and makes one gradient call per layer (what the released
notebooks do); it is timed on --reference-classes classes and scaled to --classes (its cost is linear in the
number of pairs). Its loss on those classes is checked against ntlb's on the same classes.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

import ntlb
from ntlb.explain.reference import _relevance_matrix
from ntlb.explain.relevance import clip_scores
from ntlb.losses import explainability_loss, explainability_scores
from ntlb.tasks.prompting.learner import PromptLearner
from ntlb.tasks.prompting.training import PromptConfig, step_gradients


def reference_loss(adapter, learner, pixels, labels, config) -> torch.Tensor:
    """Cross-entropy + lambda * explainability loss, pair by pair as released."""
    b_count, c_count = pixels.shape[0], len(learner.classnames)
    embeddings = learner()
    logits = torch.zeros(b_count, c_count)
    scores = torch.zeros(b_count, c_count)
    layout = learner.layout
    for b in range(b_count):
        for c in range(c_count):
            with torch.no_grad():
                image = adapter.encode_image(pixels[b : b + 1]).features  # re-encoded for every class
            text = adapter.encode_text(layout.ids[c : c + 1], layout.eot[c : c + 1], keep_from=0,
                                       embeddings=embeddings[c : c + 1])
            score = clip_scores(image, text.features, adapter.logit_scale)[0, 0]
            row = _relevance_matrix(score, text.attentions, 0, False)[int(layout.eot[c])]
            logits = logits.index_put((torch.tensor(b), torch.tensor(c)), score.float())
            s = explainability_scores(row[None, None], layout.eot[c : c + 1], layout.names[c : c + 1], config.score)
            scores = scores.index_put((torch.tensor(b), torch.tensor(c)), s[0, 0].float())
    ce = torch.nn.functional.cross_entropy(logits, labels)
    return ce + config.expl_weight * explainability_loss(scores, labels, config.reduction, config.also_minimize)


def timed(function, repeats: int) -> tuple[float, float]:
    """Best time of `function` (a step: its loss and backward) and the loss it returns."""
    best, value = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - started)
    return best, value


def reference_step(adapter, learner, pixels, labels, config) -> float:
    loss = reference_loss(adapter, learner, pixels, labels, config)
    loss.backward()
    return float(loss.detach())


def ntlb_step(adapter, learner, pixels, labels, config) -> float:
    """One step of ntlb's prompt learning (whole classes: no class chunks), its loss."""
    parts = step_gradients(adapter, learner, pixels, labels, config, class_chunk=len(learner.classnames))
    return parts["ce"] + config.expl_weight * parts.get("expl", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reference-classes", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = ntlb.load_model("ViT-B-32", device=args.device)
    names = [f"class {i}" for i in range(args.classes)]
    pixels = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(args.device)
    labels = torch.arange(args.batch) % args.reference_classes
    config = PromptConfig(n_ctx=16, position="middle", expl_weight=1.0)
    coop_config = PromptConfig(n_ctx=16, position="middle", expl_weight=0.0)
    learner = PromptLearner(adapter, names, 16, "middle").to(args.device)
    ntlb_time, _ = timed(lambda: ntlb_step(adapter, learner, pixels, labels, config), args.repeats)
    coop_time, _ = timed(lambda: ntlb_step(adapter, learner, pixels, labels, coop_config), args.repeats)
    small = PromptLearner(adapter, names[: args.reference_classes], 16, "middle").to(args.device)
    reference_time, reference_value = timed(lambda: reference_step(adapter, small, pixels, labels, config), 1)
    _, fast_value = timed(lambda: ntlb_step(adapter, small, pixels, labels, config), 1)
    scaled = reference_time * args.classes / args.reference_classes
    print(f"ViT-B/32 random weights, {args.classes} classes, batch {args.batch}, M=16, device {args.device}")
    print("| method | s / step | x CoOp | reference / method |\n|---|---:|---:|---:|")
    print(f"| CoOp (lambda=0) | {coop_time:.2f} | 1.00 | {scaled / coop_time:.1f} |")
    print(f"| ntlb (lambda=1) | {ntlb_time:.2f} | {ntlb_time / coop_time:.2f} | {scaled / ntlb_time:.1f} |")
    print(f"| reference as released (scaled from {args.reference_classes} classes) | {scaled:.1f} | "
          f"{scaled / coop_time:.1f} | 1.0 |")
    difference = abs(float(fast_value - reference_value)) / abs(float(reference_value))
    print(f"loss on {args.reference_classes} classes: ntlb {float(fast_value):.6f}, reference "
          f"{float(reference_value):.6f}, relative difference {difference:.1e}")


if __name__ == "__main__":
    main()

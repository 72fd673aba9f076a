"""Peak memory of one prompt-learning step at ImageNet's size: 1000 classes, batch 32, M = 16, ViT-B/32.

    python benchmarks/prompt_memory.py [--classes 1000] [--batch 32] [--max-memory 6GB] [--device cpu]

The step (cross-entropy + the explainability loss, lambda = 1, backward to the context vectors) runs in a fresh
child process; its peak is CUDA's max_memory_allocated, or on CPU the rise of peak RSS (Linux). Classes go through
the text encoder in chunks sized to --max-memory (their gradients add up to the whole step's, tests/test_prompts.py);
the whole step at once is estimated from the same memory model, since on a 24 GB machine it does not fit.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
import warnings

import torch
from peak_memory import PeakMemory


def step_worker(classes: int, batch: int, budget: str, device: str, queue) -> None:
    from dataclasses import replace

    import ntlb
    from ntlb.explain.memory import measure_costs, parse_memory, plan_tiles
    from ntlb.tasks.prompting.learner import PromptLearner
    from ntlb.tasks.prompting.training import PromptConfig, classes_per_chunk, prompt_explainer, step_gradients

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = ntlb.load_model("ViT-B-32", device=device)
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    names = (list(IMAGENET_CLASSNAMES) * (classes // 1000 + 1))[:classes]
    config = PromptConfig(n_ctx=16, position="middle", expl_weight=1.0)
    learner = PromptLearner(adapter, names, 16, "middle").to(device)
    explainer = prompt_explainer(config)
    pixels = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    labels = torch.arange(batch) % classes
    chunk = classes_per_chunk(adapter, explainer, learner, batch, parse_memory(budget))
    costs = replace(measure_costs(adapter, None, 0), image_graph=0.0, image_attention=0.0)
    whole = plan_tiles(costs, batch, classes, learner.layout.ids.shape[1], None, 10**15).estimate
    started = time.perf_counter()
    with PeakMemory(device) as peak:
        parts = step_gradients(adapter, learner, pixels, labels, config, explainer, class_chunk=chunk)
    seconds = time.perf_counter() - started
    queue.put({"classes": classes, "batch": batch, "budget": budget, "class_chunk": chunk,
               "peak_GiB": round(peak.mib / 2**10, 2), "whole_step_estimate_GiB": round(whole / 2**30, 1),
               "seconds": round(seconds, 1), "loss": parts["ce"] + parts["expl"], "device": device})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-memory", default="6GB", help="budget the class chunks are sized to")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=step_worker, args=(args.classes, args.batch, args.max_memory, args.device,
                                                         queue))
    process.start()
    result = queue.get()
    process.join()
    print(json.dumps(result))
    print(f"\n| classes | batch | budget | classes per chunk | peak GiB | whole step (estimate) GiB | s / step |"
          f"\n|---:|---:|---|---:|---:|---:|---:|\n| {result['classes']} | {result['batch']} | {result['budget']} | "
          f"{result['class_chunk']} | {result['peak_GiB']} | {result['whole_step_estimate_GiB']} | "
          f"{result['seconds']} |")


if __name__ == "__main__":
    main()

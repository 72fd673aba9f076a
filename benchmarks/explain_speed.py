"""ntlb.explain against the reference algorithm as released and against the floor of any exact gradient method,
on random-weight ViT-B/32 at 224 px; and the throughput of `ntlb explain-dataset` with 1 and 2 processes.

The reference re-encodes the image once per text, makes one gradient call per layer and builds full R matrices
(ntlb.explain.reference). The floor is one forward of every image and text with attention kept, plus one batched
backward of the B x T target scores to the attention probabilities (image side: T targets; text side: B rounds):
what any exact gradient method must at least compute. All timings of a case run in this one invocation, so the
ratios are measured under the same machine load; peak memory is measured in a fresh child process per method
(CUDA: max_memory_allocated; CPU: the rise of peak RSS, Linux only), and ntlb is measured twice: with its
default budget (half the free memory) and with --max-memory set to the reference's measured peak.

    python benchmarks/explain_speed.py [--cases 1x32 4x32] [--device cpu] [--repeats 3] [--no-memory]
                                       [--dataset-images 256] [--dataset-texts 10] [--no-dataset]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from peak_memory import PeakMemory
from PIL import Image

import ntlb
from ntlb.explain.reference import reference_relevance
from ntlb.explain.relevance import attention_gradients, clip_scores
from ntlb.explain.targets import AllPairs, image_targets, text_targets
from ntlb.models.inputs import prepare_texts

WORDS = ["red", "blue", "green", "small", "large", "striped", "wooden", "shiny"]
NOUNS = ["circle", "star", "dog", "car", "tree", "house", "cup", "bird"]


def texts(count: int) -> list[str]:
    return [f"a photo of a {WORDS[i % 8]} {NOUNS[(i // 8) % 8]}" for i in range(count)]


def setup(device: str, images: int, text_count: int):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = ntlb.load_model("ViT-B-32", device=device)
    pixels = torch.randn(images, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(device)
    return adapter, pixels, prepare_texts(adapter, texts(text_count))


def floor(adapter, pixels, tokens):
    """One forward with attention kept and one batched backward of every score to the attention probabilities."""
    short = tokens.truncated()
    with torch.enable_grad():
        image = adapter.encode_image(pixels, keep_from=0)
        text = adapter.encode_text(short.ids, short.eot, keep_from=0)
        logits = clip_scores(image.features, text.features, adapter.logit_scale)
        columns = AllPairs().columns(logits)
        attention_gradients(logits, image.attentions, image_targets(columns, logits), False, True)
        attention_gradients(logits, text.attentions, text_targets(columns, logits)[0], False, False)


def run(method: str, adapter, pixels, tokens, budget: str | None = None):
    with torch.no_grad():  # every path takes its gradients internally and returns detached maps
        if method == "ntlb":
            explanation = ntlb.explain(adapter, pixels, tokens, max_memory=budget)
            return explanation.image.flatten(-2), explanation.text
        if method == "floor":
            return floor(adapter, pixels, tokens)
        image, text, _ = reference_relevance(adapter, pixels, tokens)
        return image, text


def timed(method: str, adapter, pixels, tokens, repeats: int, budget: str | None = None):
    best, result = float("inf"), None
    for _ in range(repeats):
        if pixels.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = run(method, adapter, pixels, tokens, budget)
        if pixels.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_memory_worker(method: str, device: str, images: int, text_count: int, budget: str | None, queue) -> None:
    adapter, pixels, tokens = setup(device, images, text_count)
    started = time.perf_counter()
    with PeakMemory(device) as peak:
        run(method, adapter, pixels, tokens, budget)
    queue.put((peak.mib, time.perf_counter() - started))


def peak_memory(method: str, device: str, images: int, text_count: int, budget: str | None = None):
    """(peak MiB, seconds) of one call in a fresh child process."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=peak_memory_worker, args=(method, device, images, text_count, budget, queue))
    process.start()
    value = queue.get()
    process.join()
    return value


def dataset_throughput(count: int, text_count: int, device: str) -> list[dict]:
    """Images/s of `ntlb explain-dataset` on `count` random 224 px images x `text_count` texts, with 1 and 2
    processes (torchrun on loopback): the explaining loop's rate and the whole command's wall time."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "images"
        data.mkdir()
        rng = np.random.default_rng(0)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(data / f"{i:05d}.png")
        for processes in (1, 2):
            out = Path(folder) / f"out{processes}"
            command = ["-m", "ntlb", "explain-dataset", str(data), "--model", "ViT-B-32", "--workers", "1",
                       "--shard-size", "64", "--device", device, "--out", str(out)]
            for text in texts(text_count):
                command += ["--text", text]
            if processes > 1:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", 0))
                    port = probe.getsockname()[1]
                command = ["-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-addr",
                           "127.0.0.1", "--master-port", str(port), *command]
            environment = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // processes))}
            started = time.perf_counter()
            done = subprocess.run([sys.executable, *command], capture_output=True, text=True, env=environment)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            line = [t for t in done.stdout.splitlines() if t.startswith("explained")][0]
            rows.append({"processes": processes, "images": count, "texts": text_count, "wall_s": round(wall, 1),
                         "images_per_s_wall": round(count / wall, 1), "report": line})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["1x32", "4x32"], help="IMAGESxTEXTS cases")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats of the fast paths (best kept)")
    parser.add_argument("--no-memory", action="store_true", help="skip the child-process memory measurement")
    parser.add_argument("--dataset-images", type=int, default=256)
    parser.add_argument("--dataset-texts", type=int, default=10)
    parser.add_argument("--no-dataset", action="store_true", help="skip the explain-dataset throughput")
    args = parser.parse_args()
    rows = []
    for case in args.cases:
        images, text_count = (int(v) for v in case.split("x"))
        adapter, pixels, tokens = setup(args.device, images, text_count)
        run("ntlb", adapter, pixels, tokens)  # warm-up
        fast_time, (fast_image, fast_text) = timed("ntlb", adapter, pixels, tokens, args.repeats)
        floor_time, _ = timed("floor", adapter, pixels, tokens, args.repeats)
        slow_time, (slow_image, slow_text) = timed("reference", adapter, pixels, tokens, 1)
        length = fast_text.shape[-1]
        error = max(float((fast_image - slow_image).abs().max() / slow_image.abs().max()),
                    float((fast_text - slow_text[..., :length]).abs().max() / slow_text.abs().max()))
        row = {"case": case, "device": args.device, "ntlb_s": round(fast_time, 3), "floor_s": round(floor_time, 3),
               "ntlb_over_floor": round(fast_time / floor_time, 2), "reference_s": round(slow_time, 3),
               "speedup": round(slow_time / fast_time, 1), "max_relative_difference": error}
        if not args.no_memory:
            reference_peak, _ = peak_memory("reference", args.device, images, text_count)
            row["reference_peak_MiB"] = round(reference_peak, 1)
            row["ntlb_peak_MiB"] = round(peak_memory("ntlb", args.device, images, text_count)[0], 1)
            budget = f"{reference_peak:.1f}MiB"
            peak, _ = peak_memory("ntlb", args.device, images, text_count, budget)
            bounded_time, _ = timed("ntlb", adapter, pixels, tokens, args.repeats, budget)
            row.update({"budget": budget, "ntlb_budget_peak_MiB": round(peak, 1),
                        "ntlb_budget_s": round(bounded_time, 3),
                        "budget_speedup": round(slow_time / bounded_time, 1)})
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| case | ntlb (s) | floor (s) | ntlb / floor | reference (s) | speed-up | max rel. diff | reference peak "
          "MiB | ntlb peak MiB | ntlb with budget = reference peak: peak MiB, s, speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bounded = (f"{r['ntlb_budget_peak_MiB']}, {r['ntlb_budget_s']}, {r['budget_speedup']}x"
                   if "budget" in r else "-")
        print(f"| {r['case']} | {r['ntlb_s']} | {r['floor_s']} | {r['ntlb_over_floor']} | {r['reference_s']} | "
              f"{r['speedup']}x | {r['max_relative_difference']:.1e} | {r.get('reference_peak_MiB', '-')} | "
              f"{r.get('ntlb_peak_MiB', '-')} | {bounded} |")
    if not args.no_dataset:
        print()
        dataset = dataset_throughput(args.dataset_images, args.dataset_texts, args.device)
        print("\n| processes | images x texts | wall s (with start-up) | images / s (wall) | run's own report |")
        print("|---|---|---|---|---|")
        for r in dataset:
            print(f"| {r['processes']} | {r['images']} x {r['texts']} | {r['wall_s']} | {r['images_per_s_wall']} | "
                  f"{r['report']} |")


if __name__ == "__main__":
    main()

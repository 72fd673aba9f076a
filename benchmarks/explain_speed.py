"""ntlb.explain against the reference algorithm as released, on random-weight ViT-B/32 at 224 px.

The reference re-encodes the image once per text, makes one gradient call per layer and builds full R
matrices (ntlb.explain.reference). Both run in this one process invocation, so the printed ratios are
measured under the same machine load; peak memory is measured in a fresh child process per method
(CUDA: max_memory_allocated; CPU: the rise of peak RSS, Linux only).

    python benchmarks/explain_speed.py [--cases 1x32 4x32] [--device cpu] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
import warnings

import torch

import ntlb
from ntlb.explain.reference import reference_relevance
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


def run(method: str, adapter, pixels, tokens):
    with torch.no_grad():  # both paths take their gradients internally and return detached maps
        if method == "ntlb":
            explanation = ntlb.explain(adapter, pixels, tokens)
            return explanation.image.flatten(-2), explanation.text
        image, text, _ = reference_relevance(adapter, pixels, tokens)
        return image, text


def timed(method: str, adapter, pixels, tokens, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        if pixels.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = run(method, adapter, pixels, tokens)
        if pixels.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_memory_worker(method: str, device: str, images: int, text_count: int, queue) -> None:
    adapter, pixels, tokens = setup(device, images, text_count)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run(method, adapter, pixels, tokens)
        queue.put((torch.cuda.max_memory_allocated() - base) / 2**20)
        return
    with open("/proc/self/clear_refs", "w") as refs:  # Linux: reset the peak-RSS counter (VmHWM)
        refs.write("5")
    base = _status_kib("VmRSS")
    run(method, adapter, pixels, tokens)
    queue.put((_status_kib("VmHWM") - base) / 1024)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory(method: str, device: str, images: int, text_count: int) -> float:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=peak_memory_worker, args=(method, device, images, text_count, queue))
    process.start()
    value = queue.get()
    process.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["1x32", "4x32"], help="IMAGESxTEXTS cases")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats of the fast path (best kept)")
    parser.add_argument("--no-memory", action="store_true", help="skip the child-process memory measurement")
    args = parser.parse_args()
    rows = []
    for case in args.cases:
        images, text_count = (int(v) for v in case.split("x"))
        adapter, pixels, tokens = setup(args.device, images, text_count)
        run("ntlb", adapter, pixels, tokens)  # warm-up
        fast_time, (fast_image, fast_text) = timed("ntlb", adapter, pixels, tokens, args.repeats)
        slow_time, (slow_image, slow_text) = timed("reference", adapter, pixels, tokens, 1)
        length = fast_text.shape[-1]
        error = max(float((fast_image - slow_image).abs().max() / slow_image.abs().max()),
                    float((fast_text - slow_text[..., :length]).abs().max() / slow_text.abs().max()))
        row = {"case": case, "device": args.device, "ntlb_s": round(fast_time, 3),
               "reference_s": round(slow_time, 3), "speedup": round(slow_time / fast_time, 1),
               "max_relative_difference": error}
        if not args.no_memory:
            row["ntlb_peak_MiB"] = round(peak_memory("ntlb", args.device, images, text_count), 1)
            row["reference_peak_MiB"] = round(peak_memory("reference", args.device, images, text_count), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| case | ntlb (s) | reference (s) | speed-up | max rel. diff | ntlb peak MiB | reference peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        memory = f"{r.get('ntlb_peak_MiB', '-')} | {r.get('reference_peak_MiB', '-')}"
        print(f"| {r['case']} | {r['ntlb_s']} | {r['reference_s']} | {r['speedup']}x | "
              f"{r['max_relative_difference']:.1e} | {memory} |")


if __name__ == "__main__":
    main()

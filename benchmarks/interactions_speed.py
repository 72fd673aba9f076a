"""Token x patch interactions: ntlb against the released `exclip` package on the same random ViT-B/32, one run.

Each measurement runs in a fresh process (peak memory is the process's: resident set growth on the CPU, the
allocator's peak on CUDA) on identical weights and inputs: exclip explains one pair (its only mode), ntlb one pair
and a batch of N images x N texts (time per pair). Prints the time and memory ratios; the figures go into
docs/benchmarks.md. Needs `pip install --no-deps exclip` (Python >= 3.11).

    python benchmarks/interactions_speed.py [--device cuda] [--batch 8] [--max-memory 256MB]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

TEXTS = ["a photo of a cat on a red sofa", "a dog", "a small boat on a lake", "two birds in a tree",
         "a cup of coffee", "a red car", "a house with a garden", "a person riding a bicycle"]


def _model(device: str):
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", device=device)  # random weights: speed and memory, not meaning
    return model.eval()


def _status(field: str) -> float:
    """A /proc/self/status memory field in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**10
    raise KeyError(field)


def _start(device: str) -> float:
    """The memory in use now; the peak counter is reset so that `_peak` sees this call's peak alone."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets the resident set's high-water mark (VmHWM)
        return _status("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def _peak(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        return _status("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def worker(kind: str, device: str, batch: int, max_memory: str | None) -> dict:
    """One measurement in this process: seconds per pair and peak memory growth (MiB) over the loaded model."""
    import ntlb

    model = _model(device)
    adapter = ntlb.wrap(model)
    count = batch if kind == "ntlb-batch" else 1
    pixels = torch.randn(count, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(device)
    texts = (TEXTS * batch)[:count]
    tokens = adapter.tokenizer(texts)
    before = _start(device)
    started = time.perf_counter()
    if kind == "exclip":
        from exclip.explanation import OpenClipExplainer

        explainer = OpenClipExplainer(model, device=torch.device(device))
        result = explainer.explain(tokens.ids[:1].to(device), pixels[:1], N=10)
    else:
        with torch.no_grad():
            result = ntlb.explain(adapter, pixels, texts, method="interactions", logit_mode="cosine",
                                  max_memory=max_memory).interactions
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    pairs = count * count
    return {"kind": kind, "seconds_per_pair": seconds / pairs, "pairs": pairs, "peak_mib": _peak(device) - before,
            "checksum": float(result.flatten()[:64].abs().sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8, help="images and texts of the batched ntlb run")
    parser.add_argument("--max-memory", default="256MB",
                        help="ntlb's memory budget (its Jacobian-vector products go in chunks to fit it); 'auto' for "
                             "the default, half the memory available")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        budget = None if args.max_memory == "auto" else args.max_memory
        print(json.dumps(worker(args.worker, args.device, args.batch, budget)))
        return
    rows = {}
    for kind in ("exclip", "ntlb-pair", "ntlb-batch"):
        out = subprocess.run([sys.executable, __file__, "--worker", kind, "--device", args.device, "--batch",
                              str(args.batch), "--max-memory", args.max_memory], capture_output=True, text=True,
                             check=True)
        rows[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        row = rows[kind]
        print(f"{kind:<11} {row['seconds_per_pair']:8.3f} s/pair over {row['pairs']:>3} pairs, "
              f"peak +{row['peak_mib']:.0f}"
              f" MiB", flush=True)
    theirs = rows["exclip"]
    for kind in ("ntlb-pair", "ntlb-batch"):
        ours = rows[kind]
        print(f"{kind}: {theirs['seconds_per_pair'] / ours['seconds_per_pair']:.1f}x faster per pair, peak memory "
              f"{ours['peak_mib'] / max(theirs['peak_mib'], 1e-9):.3f} of exclip's ({args.device})")
    print(json.dumps({"device": args.device, "torch": torch.__version__, "max_memory": args.max_memory, "rows": rows}))


if __name__ == "__main__":
    main()

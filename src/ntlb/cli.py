"""The `ntlb` command: explain images and texts, list models."""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

from tqdm import tqdm

from .errors import NtlbError


def _slug(text: str, limit: int = 32) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "text"


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="open_clip architecture (ViT-B-32), model-config .json, hf:<dir>, or a bundled "
                             "name; default: the bundled ntlb-world model")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or checkpoint path (.pt/.safetensors)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default: cpu)")


def _load(args: argparse.Namespace):
    from .models import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(args.model, args.pretrained, device=args.device)


def _explain_in_batches(explainer, adapter, images: list[str], texts: list[str], batch_size: int):
    """(paths, explanation) per batch of images, each image encoded once for all texts."""
    import torch

    tokens = adapter.tokenizer(texts)
    chunks = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    with torch.no_grad():
        return [(chunk, explainer(adapter, chunk, tokens))
                for chunk in tqdm(chunks, desc="explaining", unit="batch", disable=len(chunks) < 2)]


def _pair_record(explanation, b: int, t: int, image_path: str, index: int, text: str, out: Path) -> dict:
    """One pair's JSON record; writes its overlay PNG when the model gives image maps."""
    from .io import save_image_atomic
    from .viz import overlay

    words = explanation.words(b, t, normalize="visual")
    record = {
        "image": str(image_path), "text": text,
        "logit": float(explanation.logits[b, t]), "probability": float(explanation.probabilities()[b, t]),
        "words": [[w, r] for w, r in words], "overlay": None, "patch_map": None,
    }
    if explanation.has_image_maps():
        name = f"{index:03d}_{_slug(Path(image_path).stem, 24)}__{t:02d}_{_slug(text)}.png"
        save_image_atomic(out / name, overlay(explanation.originals[b], explanation.image[b, t],
                                              explanation.preprocess))
        record["overlay"] = name
        record["patch_map"] = [[round(float(v), 6) for v in row] for row in explanation.image[b, t]]
    return record


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import create
    from .io import write_json_atomic
    from .viz import explanation_grid, words_ansi
    from .viz.report import write_report

    if not args.text:
        raise NtlbError("no texts given: add at least one --text \"...\"")
    adapter = _load(args)
    explainer = create(args.method, start_layer_image=args.start_layer_image,
                       start_layer_text=args.start_layer_text, logit_mode=args.logit_mode)
    batches = _explain_in_batches(explainer, adapter, args.images, args.text, args.batch_size)
    notes = []
    if adapter.random_weights:
        notes.append(f"model {adapter.name} has random weights: the maps show the numerics, not meaning")
    if not batches[0][1].has_image_maps():
        notes.append(batches[0][1].image_note)
    out, records, offset = Path(args.out), [], 0
    for chunk, explanation in batches:
        for b, t in explanation.pair_indices():
            record = _pair_record(explanation, b, t, chunk[b], offset + b, args.text[t], out)
            records.append(record)
            if not args.quiet:
                print(f"{Path(chunk[b]).name} | {words_ansi(explanation.words(b, t))} | "
                      f"logit {record['logit']:.2f} p {record['probability']:.2f}")
        offset += len(chunk)
    if len(batches) == 1 and len(records) <= 64:
        explanation_grid(batches[0][1], out / "grid.png", texts=args.text)
    write_json_atomic(out / "explanations.json", {
        "model": adapter.name, "random_weights": adapter.random_weights, "method": args.method,
        "logit_mode": args.logit_mode, "start_layer_image": args.start_layer_image,
        "start_layer_text": args.start_layer_text, "texts": args.text, "notes": notes, "pairs": records,
    })
    write_report(out / "report.html", f"ntlb {args.method} on {adapter.name}", records, notes)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {len(records)} pairs to {out}/ (report.html, explanations.json"
          f"{', grid.png' if (out / 'grid.png').exists() else ''})")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import open_clip

    from .models import bundled_models

    print("Bundled (load with no --model, or by name):")
    for name, entry in bundled_models().items():
        state = "trained weights" if entry["weights"] else "no weights yet: random init"
        print(f"  {name:<16} {entry['config'].name} ({state})")
    print("\nopen_clip architectures (--model NAME; add --pretrained TAG|PATH):")
    names = open_clip.list_models()
    print("  " + ", ".join(names))
    print("\nPretrained tags need a network or a filled open_clip cache; with neither, pass a checkpoint path.")
    print("Also: --model path/to/config.json (open_clip model config) and --model hf:<dir> (transformers CLIPModel).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .explain import available

    parser = argparse.ArgumentParser(prog="ntlb", description="CLIP explains its own similarity scores.")
    commands = parser.add_subparsers(dest="command", required=True)

    explain = commands.add_parser("explain", help="relevance maps and word relevance for images x texts",
                                  description="Explain the CLIP score of every image with every text.")
    explain.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    explain.add_argument("--text", action="append", default=[], help="a text to explain; repeat for more")
    _add_model_arguments(explain)
    explain.add_argument("--method", default="chefer2021", choices=available(), help="explainer (default chefer2021)")
    explain.add_argument("--start-layer-image", type=int, default=0,
                         help="first image layer used (negative counts from the end; -1 = last only)")
    explain.add_argument("--start-layer-text", type=int, default=0, help="first text layer used")
    explain.add_argument("--logit-mode", default="scaled", choices=["scaled", "cosine"])
    explain.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    explain.add_argument("--out", default="out/explain", help="output folder (default out/explain)")
    explain.add_argument("--quiet", action="store_true", help="do not print highlighted words")
    explain.set_defaults(run=cmd_explain)

    models = commands.add_parser("models", help="list loadable and bundled models",
                                 description="List bundled models and open_clip architectures.")
    models.set_defaults(run=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except NtlbError as err:
        print(f"ntlb: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

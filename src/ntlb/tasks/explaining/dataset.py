"""Explaining a whole dataset: an image folder, a file list or WebDataset shards, in batches from DataLoader
workers, written as shards of maps (safetensors) and an index; resumable, and split over torchrun's processes.

Work is cut into units fixed by the data alone (`shard_size` images of a folder or list, or one input .tar),
one output shard each, so a rerun skips the shards already written (each is written atomically: none is ever
half there) and N processes take every N-th unit: no image twice, none missed, the same shards as one process.
Ctrl-C keeps the images of the unfinished shard in a partial shard beside it, which the rerun continues.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ...config import settings as settings_of
from ...config.explaining import DatasetSettings
from ...distributed import World, barrier
from ...errors import Interrupted, NtlbError
from ...explain import create
from ...explain.base import Explainer
from ...explain.relevance import clip_scores
from ...explain.targets import AllPairs, Columns, TopK
from ...io import load_image, write_bytes_atomic, write_json_atomic, write_record
from ...models.adapter import ClipAdapter
from ...models.features import text_features
from ...models.inputs import prepare_texts
from ...training import interrupted_line, read_checkpoint, refuse_other_settings, resuming_line
from .folders import EXTENSIONS, read_image_folder

WEBDATASET_IMAGES = "jpg;jpeg;png;webp"


@dataclass
class Unit:
    """One output shard's input: (path, label) items of a folder or list, or one WebDataset .tar."""

    index: int
    items: list[tuple[str, int]] | None = None
    url: str | None = None


def dataset_units(data: str | Path, shard_size: int) -> tuple[list[Unit], list[str] | None]:
    """The units of `data` and its class names (for a folder of class folders), one-line errors otherwise."""
    if shard_size < 1:
        raise NtlbError(f"--shard-size {shard_size}: use at least 1 image per shard")
    text = str(data)
    if text.endswith(".tar") or "{" in text:
        try:
            from braceexpand import braceexpand
        except ImportError:
            raise NtlbError("WebDataset shards need the webdataset package: pip install 'ntlb[webdataset]'") from None

        urls = list(braceexpand(text))
        missing = [u for u in urls if "://" not in u and not Path(u).is_file()]
        if missing:
            raise NtlbError(f"WebDataset shard not found: {missing[0]}: check the path or brace pattern")
        return [Unit(i, url=url) for i, url in enumerate(urls)], None
    path = Path(data)
    if path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        items = [(str(p if Path(p).is_absolute() else path.parent / p), -1) for p in lines]
        names = None
    elif path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        folder = read_image_folder(path)
        items, names = [(str(p), label) for p, label in folder.samples], folder.classnames
    elif path.is_dir():
        items, names = [(str(p), -1) for p in sorted(path.iterdir()) if p.suffix.lower() in EXTENSIONS], None
    else:
        raise NtlbError(f"dataset not found: {data}: give an image folder, a file list (.txt) or WebDataset .tar")
    if not items:
        raise NtlbError(f"{data} holds no images: give PNG/JPEG/... files")
    return [Unit(i // shard_size, items=items[i : i + shard_size]) for i in range(0, len(items), shard_size)], names


class _Files(Dataset):
    """(pixels, item index) of a unit's files."""

    def __init__(self, items: list[tuple[str, int]], preprocess):
        self.items, self.preprocess = items, preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.preprocess(load_image(self.items[index][0])), index


def _batches(unit: Unit, preprocess, batch_size: int, workers: int, skip: int = 0):
    """(pixels, keys, labels) batches of a unit, after its first `skip` images (those of a partial shard)."""
    if unit.url is not None:
        try:
            import webdataset as wds
        except ImportError:
            raise NtlbError("WebDataset shards need the webdataset package: pip install 'ntlb[webdataset]'") from None
        images = (wds.WebDataset(unit.url, shardshuffle=False).decode("pil").to_tuple(WEBDATASET_IMAGES, "__key__")
                  .map_tuple(lambda image: preprocess(image.convert("RGB")), str))
        seen = 0
        for pixels, keys in DataLoader(images, batch_size=batch_size, num_workers=min(workers, 1)):
            first, seen = max(0, skip - seen), seen + len(keys)  # a partial shard's images: read (in order), not
            if first < len(keys):  # explained again
                yield pixels[first:], list(keys)[first:], torch.full((len(keys) - first,), -1)
        return
    items = unit.items[skip:]
    loader = DataLoader(_Files(items, preprocess), batch_size=batch_size, num_workers=workers)
    for pixels, index in loader:
        chosen = [items[int(i)] for i in index]
        yield pixels, [path for path, _ in chosen], torch.tensor([label for _, label in chosen])


def shard_path(out: Path, index: int, partial: bool = False) -> Path:
    return out / "shards" / f"shard-{index:06d}{'.partial' if partial else ''}.safetensors"


PARTS = ("image", "text", "columns", "scores", "labels")


def _partial_parts(out: Path, index: int) -> dict[str, list]:
    """The images of a unit that an interrupted run kept (as explain_unit collects them), or none."""
    parts: dict[str, list] = {name: [] for name in PARTS} | {"keys": []}
    path = shard_path(out, index, partial=True)
    if path.is_file():
        held = read_shard(path)
        parts["keys"] = held.pop("keys")
        for name, tensor in held.items():
            parts[name].append(tensor)
    return parts


def _joined(parts: dict[str, list]) -> dict:
    """One shard's tensors from its batches; a batch cut off by Ctrl-C before its keys were added is left out."""
    count = len(parts["keys"])
    for name in PARTS:
        while sum(len(value) for value in parts[name]) > count:
            parts[name].pop()
    return {name: (values if name == "keys" else torch.cat(values)) for name, values in parts.items() if values}


def explain_unit(adapter: ClipAdapter, explainer: Explainer, unit: Unit, settings: DatasetSettings, tokens,
                 features: torch.Tensor | None, batch_size: int, workers: int, bar: tqdm | None,
                 parts: dict[str, list] | None = None) -> dict:
    """The tensors of one shard: per image its K explained texts (`columns`), their scores, image maps and text
    relevance (padded to the longest text), its label (-1: none) and key. `parts` (filled as batches are done, so
    an interrupted caller keeps them) may hold the unit's first images already (from a partial shard)."""
    parts = parts if parts is not None else {name: [] for name in PARTS} | {"keys": []}
    length = tokens.ids.shape[1]
    for pixels, keys, labels in _batches(unit, adapter.preprocess, batch_size, workers, len(parts["keys"])):
        if features is not None:  # many texts: pick each image's top k from cached features, explain those only
            with torch.no_grad():
                logits = clip_scores(adapter.encode_image(pixels).features, features, adapter.logit_scale,
                                     explainer.logit_mode)
                needed, local = TopK(settings.top_k).subset(logits)
                columns = torch.tensor(needed)[local]
                explanation = explainer(adapter, pixels, tokens.select(needed).truncated(), pairs=Columns(local))
        else:
            with torch.no_grad():
                pairs = TopK(settings.top_k) if settings.top_k else AllPairs()
                explanation = explainer(adapter, pixels, tokens, pairs=pairs)
                columns = explanation.columns.cpu()
                logits = explanation.logits
        parts["columns"].append(columns.cpu())
        parts["scores"].append(logits.detach().float().cpu().gather(1, columns.cpu()))
        if explanation.has_image_maps():
            parts["image"].append(explanation.image.float().cpu())
        if explanation.has_text_relevance():
            text = explanation.text.float().cpu()
            parts["text"].append(torch.nn.functional.pad(text, (0, length - text.shape[-1])))
        parts["labels"].append(labels)
        parts["keys"] += keys
        if bar is not None:
            bar.update(len(keys))
    if not parts["keys"]:
        raise NtlbError(f"shard {unit.index} of {settings.data} holds no readable image")
    return _joined(parts)


def write_shard(path: Path, tensors: dict) -> None:
    from safetensors.torch import save

    keys = tensors.pop("keys")
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata={"keys": json.dumps(keys)})
    write_bytes_atomic(path, data)


def shard_keys(path: str | Path) -> list:
    """A shard's image keys, from its metadata alone (no tensor is read)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as file:
        return json.loads(file.metadata()["keys"])


def read_shard(path: str | Path) -> dict:
    """A shard's tensors (through the one checkpoint reader) and its image keys ("keys")."""
    tensors = read_checkpoint(path, what="dataset shard", fix="rerun the command that wrote it with a new --out")
    tensors["keys"] = shard_keys(path)
    return tensors


def explain_dataset(adapter: ClipAdapter, settings: DatasetSettings, out: str | Path, world: World | None = None,
                    batch_size: int = 32, workers: int = 2, max_memory: str | None = None,
                    progress: bool = True) -> dict:
    """Explain every image of `settings.data` with its texts (all of them, or each image's top k), writing
    out/shards/shard-NNNNNN.safetensors and out/index.json. Finished shards are skipped, so an interrupted run
    continues where it stopped; under torchrun each process takes every N-th shard and the first writes the
    index. Returns the index."""
    world = world or World()
    out = Path(out)
    if not settings.texts:
        raise NtlbError("no texts or classes given: add --text \"...\", --classes FILE, or give an image folder with "
                        "class folders")
    if settings.top_k is not None and not 1 <= settings.top_k <= len(settings.texts):
        raise NtlbError(f"--top-k {settings.top_k}: use 1..{len(settings.texts)} (the number of texts)")
    units, _ = dataset_units(settings.data, settings.shard_size)
    _claim(out, settings, world)
    explainer = create(settings.explainer, max_memory=max_memory)
    prompts = [settings.template.format(text) for text in settings.texts]
    tokens = prepare_texts(adapter, prompts).truncated()
    many = settings.top_k is not None and len(prompts) > 4 * settings.top_k
    features = text_features(adapter, prompts).to(adapter.dtype) if many else None
    mine = [unit for unit in units if unit.index % world.size == world.rank]
    todo = [unit for unit in mine if not shard_path(out, unit.index).is_file()]
    images = sum(len(unit.items) for unit in todo) if all(unit.items for unit in todo) else None
    bar = tqdm(total=images, unit="img", desc="explaining dataset", disable=not (progress and world.main),
               smoothing=0.1)
    done = len(mine) - len(todo)
    if done and progress and world.main:
        print(resuming_line("explaining dataset", "shard", done, len(mine), out), file=sys.stderr)
    started = time.perf_counter()
    kept = ""
    try:
        for unit in todo:
            parts = _partial_parts(out, unit.index)
            bar.update(len(parts["keys"]))
            try:
                tensors = explain_unit(adapter, explainer, unit, settings, tokens, features, batch_size, workers, bar,
                                       parts)
                write_shard(shard_path(out, unit.index), dict(tensors))
            except KeyboardInterrupt:
                if parts["keys"]:
                    write_shard(shard_path(out, unit.index, partial=True), _joined(parts))
                    kept = f"{len(parts['keys'])} images of it kept in a partial shard"
                raise
            shard_path(out, unit.index, partial=True).unlink(missing_ok=True)
            done += 1
    except KeyboardInterrupt:
        raise Interrupted(interrupted_line(f"during shard {done + 1}/{len(mine)}", done, "shard", kept)) from None
    finally:
        bar.close()
    barrier(world)
    index = write_record(out / "index.json", _index(out, settings, units), adapter, settings_of(settings)) \
        if world.main else {}
    index["seconds"] = time.perf_counter() - started
    return index


def _claim(out: Path, settings: DatasetSettings, world: World) -> None:
    """Write the settings beside the shards, or refuse a folder that holds a run with other settings."""
    path = out / "settings.json"
    wanted = settings_of(settings)
    if path.is_file():
        refuse_other_settings(json.loads(path.read_text()), wanted, f"{out} holds a dataset explanation", "a new --out")
    elif world.main:
        write_json_atomic(path, wanted)
    barrier(world)


def _index(out: Path, settings: DatasetSettings, units: list[Unit]) -> dict:
    shards = []
    for unit in units:
        path = shard_path(out, unit.index)
        count = len(shard_keys(path))  # the index needs only how many images each shard holds
        shards.append({"file": str(path.relative_to(out)), "images": count})
    return {"texts": [settings.template.format(t) for t in settings.texts], "shards": shards,
            "images": sum(s["images"] for s in shards),
            "tensors": {"columns": "(N, K) index of each explained text", "scores": "(N, K) its score",
                        "image": "(N, K, h, w) patch relevance", "text": "(N, K, L) token relevance R[EOT, :]",
                        "labels": "(N,) class index, -1 when none"}}

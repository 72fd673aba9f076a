"""Explaining datasets: shards hold what ntlb.explain gives for the same images, an interrupted run resumes with
nothing lost (the images of an unfinished shard kept in a partial one), and folders, file lists and WebDataset
shards give the same maps."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest
import torch

import ntlb
from ntlb.cli import main
from ntlb.tasks.explaining.dataset import DatasetSettings, explain_dataset, read_shard
from ntlb.tasks.explaining.folders import read_image_folder
from ntlb.world.datasets import export_classification

CLASSES = ["circle", "star", "square", "cross", "diamond", "triangle"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return export_classification(tmp_path_factory.mktemp("dataset") / "data", task="shape", split="test",
                                 per_class=2)


@pytest.fixture(scope="module")
def model():
    return ntlb.load_model()


def _all_shards(out) -> dict:
    index = json.loads((out / "index.json").read_text())
    parts = [read_shard(out / shard["file"]) for shard in index["shards"]]
    return {key: (sum((p[key] for p in parts), []) if key == "keys" else torch.cat([p[key] for p in parts]))
            for key in parts[0]}


def _as_explained_directly(model, shards: dict, names: list[str]) -> None:
    """The shards equal ntlb.explain of the same images with every text and each image's top 2."""
    with torch.no_grad():
        direct = ntlb.explain(model, shards["keys"], [f"a photo of a {c}." for c in names], pairs=ntlb.top_k(2))
    assert torch.equal(shards["columns"], direct.columns)
    assert torch.allclose(shards["image"], direct.image, rtol=1e-4, atol=1e-6)
    assert torch.allclose(shards["text"][..., : direct.text.shape[-1]], direct.text, rtol=1e-4, atol=1e-6)
    assert torch.allclose(shards["scores"], direct.logits.gather(1, direct.columns), rtol=1e-5)


@pytest.mark.slow
def test_shards_hold_the_explanations_of_the_top_classes(folder, model, tmp_path):
    settings = DatasetSettings(str(folder), CLASSES, "a photo of a {}.", top_k=2, shard_size=5)
    index = explain_dataset(model, settings, tmp_path / "out", batch_size=4, workers=0, progress=False)
    assert index["images"] == 12 and [s["images"] for s in index["shards"]] == [5, 5, 2]
    shards = _all_shards(tmp_path / "out")
    _as_explained_directly(model, shards, CLASSES)
    assert shards["labels"].tolist() == [label for _, label in read_image_folder(folder).samples]


@pytest.mark.slow
def test_many_classes_take_the_cached_features_path(folder, model, tmp_path):
    """With many more texts than top-k, each batch explains only the texts its images picked: same numbers."""
    names = CLASSES + [f"{c} thing" for c in ("red", "blue", "green", "pink", "cyan", "yellow", "orange")]
    settings = DatasetSettings(str(folder), names, "a photo of a {}.", top_k=2, shard_size=12)
    explain_dataset(model, settings, tmp_path / "out", batch_size=6, workers=0, progress=False)
    _as_explained_directly(model, _all_shards(tmp_path / "out"), names)


@pytest.mark.slow
def test_interrupted_run_resumes_with_nothing_lost(folder, model, tmp_path, monkeypatch, capsys):
    import ntlb.tasks.explaining.dataset as runner

    settings = DatasetSettings(str(folder), CLASSES[:3], shard_size=4)
    straight = explain_dataset(model, settings, tmp_path / "a", batch_size=4, workers=0, progress=False)
    write = runner.write_shard
    calls = {"n": 0}

    def stop_during_second_shard(path, tensors):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        write(path, tensors)

    monkeypatch.setattr(runner, "write_shard", stop_during_second_shard)
    with pytest.raises(KeyboardInterrupt, match=r"^interrupted during shard 2/3 \(1 shard done, 4 images of it kept "
                                                 r"in a partial shard\): rerun the same command to resume$"):
        explain_dataset(model, settings, tmp_path / "b", batch_size=4, workers=0, progress=False)
    assert sorted(p.name for p in (tmp_path / "b" / "shards").iterdir()) == [
        "shard-000000.safetensors", "shard-000001.partial.safetensors"]
    monkeypatch.setattr(runner, "write_shard", write)
    resumed = explain_dataset(model, settings, tmp_path / "b", batch_size=4, workers=0)
    assert f"resuming explaining dataset at shard 2/3 (1 shard done) from {tmp_path / 'b'}" in capsys.readouterr().err
    assert resumed["shards"] == straight["shards"]
    a, b = _all_shards(tmp_path / "a"), _all_shards(tmp_path / "b")
    assert a["keys"] == b["keys"] and all(torch.equal(a[k], b[k]) for k in a if k != "keys")
    with pytest.raises(ntlb.NtlbError, match="other settings \\(top_k\\)"):
        explain_dataset(model, DatasetSettings(str(folder), CLASSES[:3], shard_size=4, top_k=1), tmp_path / "b",
                        progress=False)


def test_an_interrupted_shard_keeps_its_images_and_the_rerun_explains_only_the_rest(folder, model, tmp_path,
                                                                                    monkeypatch, capsys):
    """One shard bigger than the dataset (as the default 1024 is for a small one): Ctrl-C in its third batch keeps
    the first two batches, and the rerun explains only the last one, to the same shard as an uninterrupted run."""
    import ntlb.tasks.explaining.dataset as runner

    settings = DatasetSettings(str(folder), CLASSES[:3])
    straight = explain_dataset(model, settings, tmp_path / "a", batch_size=4, workers=0, progress=False)
    batches, calls = runner._batches, {"n": 0, "stop": 3}

    def interrupted(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == calls["stop"]:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(runner, "_batches", interrupted)
    with pytest.raises(KeyboardInterrupt, match=r"^interrupted during shard 1/1 \(8 images of it kept in a partial "
                                                 r"shard\): rerun the same command to resume$"):
        explain_dataset(model, settings, tmp_path / "b", batch_size=4, workers=0, progress=False)
    partial = tmp_path / "b" / "shards" / "shard-000000.partial.safetensors"
    assert len(read_shard(partial)["keys"]) == 8
    calls.update(n=0, stop=0)
    resumed = explain_dataset(model, settings, tmp_path / "b", batch_size=4, workers=0, progress=False)
    assert calls["n"] == 1 and not partial.exists()  # the last 4 images only
    assert resumed["shards"] == straight["shards"]
    a, b = _all_shards(tmp_path / "a"), _all_shards(tmp_path / "b")
    assert a["keys"] == b["keys"] and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a if k != "keys")


@pytest.mark.slow
def test_file_lists_and_webdataset_shards_give_the_folder_maps(folder, model, tmp_path):
    images = sorted(folder.rglob("*.png"))[:6]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in images))
    for number in range(2):  # two .tar shards of 3 images, keys as WebDataset writes them
        with tarfile.open(tmp_path / f"part-{number}.tar", "w") as tar:
            for path in images[3 * number : 3 * number + 3]:
                data = path.read_bytes()
                info = tarfile.TarInfo(f"{path.parent.name}_{path.stem}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    texts = ["a red circle", "a blue star"]
    explain_dataset(model, DatasetSettings(str(listing), texts, shard_size=4), tmp_path / "list", workers=0,
                    progress=False)
    explain_dataset(model, DatasetSettings(str(tmp_path / "part-{0..1}.tar"), texts), tmp_path / "wds", workers=0,
                    progress=False)
    listed, tarred = _all_shards(tmp_path / "list"), _all_shards(tmp_path / "wds")
    assert listed["keys"] == [str(p) for p in images] and len(tarred["keys"]) == 6
    assert torch.allclose(listed["image"], tarred["image"], rtol=1e-5, atol=1e-7)
    assert (listed["labels"] == -1).all() and listed["columns"].tolist() == [[0, 1]] * 6


@pytest.mark.slow
def test_command_line_and_its_errors(folder, tmp_path, capsys):
    assert main(["explain-dataset", str(folder), "--top-k", "1", "--shard-size", "6", "--workers", "0",
                 "--out", str(tmp_path / "c")]) == 0
    assert "explained 12 images x 1 texts in 2 shards" in capsys.readouterr().out
    assert main(["explain-dataset", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    assert "dataset not found" in capsys.readouterr().err
    assert main(["explain-dataset", str(folder), "--text", "a", "--top-k", "3", "--out", str(tmp_path / "y")]) == 2
    assert "--top-k 3: use 1..1" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_runs_the_same_command_in_two_processes(folder, tmp_path):
    from test_distributed import free_port

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), "-m", "ntlb", "explain-dataset", str(folder), "--top-k", "2",
               "--shard-size", "3", "--workers", "0", "--out", str(tmp_path / "t")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    index = json.loads((tmp_path / "t" / "index.json").read_text())
    assert index["images"] == 12 and len(index["shards"]) == 4
    assert done.stdout.count("explained 12 images") == 1  # the first process reports, once

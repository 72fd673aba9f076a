"""Many processes on CPU (gloo), as torchrun runs them: prompt learning with DDP gives the prompts of one
process with the same global batch."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

import ntlb
from ntlb.tasks.explaining.folders import read_image_folder
from ntlb.tasks.prompting.learner import PromptLearner
from ntlb.tasks.prompting.training import PromptConfig, train_prompts
from ntlb.world.datasets import export_classification

CONFIG = {"n_ctx": 2, "epochs": 1, "shots": 2, "batch_size": 4, "expl_weight": 1.0, "seed": 3, "warmup_epochs": 0,
          "lr": 0.5}  # 12 images: 3 steps, large enough to move the vectors


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_process(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives process `rank` of `world` on this machine (loopback only)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def _train(rank: int, world: int, port: int, data: str, out: str) -> None:
    as_process(rank, world, port)
    train_prompts(ntlb.load_model(), read_image_folder(data), out, PromptConfig(**CONFIG), progress=False)
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return export_classification(tmp_path_factory.mktemp("shots") / "data", task="shape", split="train", per_class=2)


@pytest.mark.slow
def test_two_processes_train_the_prompts_of_one(shots, tmp_path):
    one = train_prompts(ntlb.load_model(), read_image_folder(shots), tmp_path / "one.pt", PromptConfig(**CONFIG),
                        progress=False)
    mp.spawn(_train, args=(2, free_port(), str(shots), str(tmp_path / "two.pt")), nprocs=2)
    alone, together = (torch.load(path, weights_only=False) for path in (one, tmp_path / "two.pt"))
    assert together["done"] == alone["done"] == 1
    assert torch.allclose(together["ctx"], alone["ctx"], atol=1e-5)
    start = PromptLearner(ntlb.load_model(), read_image_folder(shots).classnames, n_ctx=2, seed=3).ctx.detach()
    assert float((alone["ctx"] - start).abs().max()) > 0.01  # three steps moved the vectors far beyond 1e-5
    assert together["history"][0]["ce"] == pytest.approx(alone["history"][0]["ce"], rel=1e-5)


def _explain(rank: int, world: int, port: int, data: str, out: str) -> None:
    from ntlb.distributed import current_world
    from ntlb.tasks.explaining.dataset import DatasetSettings, explain_dataset

    as_process(rank, world, port)
    settings = DatasetSettings(data, ["circle", "star", "square"], "a photo of a {}.", top_k=2, shard_size=5)
    explain_dataset(ntlb.load_model(), settings, out, current_world(), batch_size=4, workers=0, progress=False)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_write_the_shards_of_one(shots, tmp_path):
    from ntlb.tasks.explaining.dataset import DatasetSettings, explain_dataset, read_shard

    settings = DatasetSettings(str(shots), ["circle", "star", "square"], "a photo of a {}.", top_k=2, shard_size=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two processes: the same kernels, so the same bits
    try:
        alone = explain_dataset(ntlb.load_model(), settings, tmp_path / "one", batch_size=4, workers=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    mp.spawn(_explain, args=(2, free_port(), str(shots), str(tmp_path / "two")), nprocs=2)
    together = json.loads((tmp_path / "two" / "index.json").read_text())
    assert together["shards"] == alone["shards"] and together["images"] == 12  # none missed, none twice
    for shard in alone["shards"]:
        one, two = read_shard(tmp_path / "one" / shard["file"]), read_shard(tmp_path / "two" / shard["file"])
        assert one["keys"] == two["keys"] and all(torch.equal(one[k], two[k]) for k in one if k != "keys")

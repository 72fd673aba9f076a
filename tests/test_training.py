"""The one long-run loop (cadence, time limit, Ctrl-C and resume lines, a resumed run equal to a straight one) and
the one checkpoint reader (format, finiteness, truncation), on a toy least-squares run: no model needed."""

from __future__ import annotations

import pytest
import torch

from ntlb.errors import Interrupted, NtlbError
from ntlb.training import TrainingRun, descend, read_checkpoint

TOTAL = 5


def _toy(path, total=TOTAL, every=2, max_minutes=None, stop_at=None, saves=None, progress=False):
    """SGD with momentum on |A w - b|^2, one seeded batch per step; returns (w, history, run)."""
    weight = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    optimizer = torch.optim.SGD([weight], lr=0.05, momentum=0.9)
    run = TrainingRun(path, "toy", {"lr": 0.05}, total, progress=progress)
    state = run.resume()
    history = []
    if state is not None:
        with torch.no_grad():
            weight.copy_(state["weight"])
        optimizer.load_state_dict(state["optimizer"])
        history = state["history"]

    def step(number, _):
        if number == stop_at:
            raise KeyboardInterrupt
        a = torch.randn(4, 3, generator=torch.Generator().manual_seed(number), dtype=torch.float64)
        loss = (a @ weight - a.sum(dim=1)).pow(2).mean()
        descend(optimizer, loss)
        history.append(float(loss.detach()))
        return {"loss": history[-1]}

    def before_save(done):
        if saves is not None:
            saves.append(done)

    run.loop(step, lambda: {"weight": weight.detach().clone(), "optimizer": optimizer.state_dict(),
                            "history": history}, every=every, max_minutes=max_minutes, before_save=before_save)
    return weight.detach(), history, run


def test_the_loop_checkpoints_every_n_and_at_the_end(tmp_path):
    saves = []
    weight, history, run = _toy(tmp_path / "c.pt", saves=saves)
    assert saves == [2, 4, 5] and run.saved == TOTAL and len(history) == TOTAL
    state = read_checkpoint(tmp_path / "c.pt", "toy")
    assert state["done"] == TOTAL and torch.equal(state["weight"], weight) and state["history"] == history
    assert history[-1] < history[0]  # it did descend


def test_ctrl_c_says_what_was_saved_and_the_rerun_resumes_where_it_said(tmp_path, capsys):
    straight, straight_history, _ = _toy(tmp_path / "straight.pt")
    path = tmp_path / "c.pt"
    with pytest.raises(Interrupted, match=r"^interrupted during step 1/5 \(nothing saved yet\): rerun the same "
                                          r"command to start again$"):
        _toy(path, stop_at=0)
    assert not path.exists()
    with pytest.raises(Interrupted, match=r"^interrupted during step 4/5 \(2 steps done\): rerun the same command "
                                          r"to resume$"):
        _toy(path, stop_at=3)
    assert read_checkpoint(path, "toy")["done"] == 2
    resumed, history, _ = _toy(path, progress=True)
    assert "resuming toy at step 3/5 (2 steps done) from" in capsys.readouterr().err
    assert torch.equal(resumed, straight) and history == straight_history  # bit for bit


def test_the_time_limit_stops_with_a_checkpoint_and_the_rerun_finishes_identically(tmp_path, capsys):
    straight, straight_history, _ = _toy(tmp_path / "straight.pt")
    path = tmp_path / "c.pt"
    _, history, run = _toy(path, every=10, max_minutes=0)
    assert run.saved == 1 and len(history) == 1 and read_checkpoint(path, "toy")["done"] == 1
    assert "toy stopped after 0 minutes at step 1/5 (1 step done): rerun the same command to resume" in \
        capsys.readouterr().err
    resumed, history, _ = _toy(path, every=10)
    assert torch.equal(resumed, straight) and history == straight_history


def test_the_one_reader_refuses_non_finite_truncated_and_foreign_files(tmp_path):
    from safetensors.torch import save_file

    _toy(tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    state["optimizer"]["state"][0]["momentum_buffer"][1] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(NtlbError, match=r"toy file .*nan.pt has NaN/Inf values in 'optimizer.state.0.momentum_buffer'"
                                        r": the file is corrupt or its training diverged; rerun with a lower"):
        read_checkpoint(tmp_path / "nan.pt", "toy")
    save_file({"w": torch.tensor([1.0, float("inf")])}, str(tmp_path / "inf.safetensors"))
    with pytest.raises(NtlbError, match=r"checkpoint .*inf.safetensors has NaN/Inf values in 'w'"):
        read_checkpoint(tmp_path / "inf.safetensors")
    whole = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(NtlbError, match=r"cannot read toy file .*half.pt: the file is truncated"):
        read_checkpoint(tmp_path / "half.pt", "toy")
    with pytest.raises(NtlbError, match=r"other.pt is not an ntlb toy file: give a file that ntlb wrote"):
        torch.save({"w": torch.zeros(1)}, tmp_path / "other.pt")
        read_checkpoint(tmp_path / "other.pt", "toy")
    assert torch.equal(read_checkpoint(tmp_path / "other.pt")["w"], torch.zeros(1))  # any file of tensors

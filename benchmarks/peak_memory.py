"""The rise of peak memory during a block of code: CUDA's max_memory_allocated, or on CPU the peak RSS of this
process (Linux: /proc/self/status, reset through /proc/self/clear_refs). Shared by the benchmarks."""

from __future__ import annotations

import torch


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """`with PeakMemory(device) as peak: ...`, then `peak.mib`: the rise of the peak over the start, in MiB."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith("cuda")
        self.mib = 0.0

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            self.base = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _status_kib("VmHWM") * 1024
        self.mib = (peak - self.base) / 2**20

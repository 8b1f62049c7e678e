"""Count the ops that make the host wait for the device (a guard for "no host sync inside a step").

On CUDA an op whose output size or value the host must read (``.item()``, ``nonzero``, boolean
indexing, ``unique``, ...) stalls the launch queue until the GPU catches up.
:class:`HostSyncCounter` counts them on any device (the CPU included) with a ``TorchDispatchMode``,
so tests and benches can assert the count is 0 without a GPU. It also counts tensors made from
host (Python) data, ``torch.tensor(x)``: made every step, each is one more host-to-device copy on
a GPU (or, for a log value, a CPU tensor beside device ones). Self-contained (torch only), so a
bench can load it by path.
"""
from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode

# data-dependent ops: their output size or value must reach the host before the next op is queued
SYNCING = frozenset({
    "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "aten::unique",
    "aten::_unique", "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive",
    "aten::masked_select", "aten::nonzero_static", "aten::equal"})
# tensors built from Python data (torch.tensor, torch.as_tensor of a number or list)
HOST_TENSORS = frozenset({"aten::lift_fresh", "aten::lift_fresh_copy"})


class HostSyncCounter(TorchDispatchMode):
    """``with HostSyncCounter() as c: ...`` -> ``c.ops`` maps each syncing op's name to its count,
    ``c.host_tensors`` each host-data tensor op's; ``c.total`` is every op dispatched."""

    def __init__(self):
        super().__init__()
        self.ops: dict[str, int] = {}
        self.host_tensors: dict[str, int] = {}
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        self.total += 1
        if name in SYNCING:
            self.ops[name] = self.ops.get(name, 0) + 1
        elif name in HOST_TENSORS:
            self.host_tensors[name] = self.host_tensors.get(name, 0) + 1
        return func(*args, **(kwargs or {}))

    @property
    def syncs(self) -> int:
        return sum(self.ops.values())

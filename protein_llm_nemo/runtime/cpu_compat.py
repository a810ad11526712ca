"""Run megatron-core on machines without CUDA.

megatron-core assumes a GPU in a handful of places (see stack.md): it allocates with `device="cuda"`
literals (causal masks, pipeline schedules, grad-norm buffers), passes `torch.cuda.current_device()`
as a device, calls `torch.cuda.synchronize()`, and keeps its model-parallel RNG streams as CUDA
generator states. On a CPU-only host we redirect exactly those:

- a process-wide `TorchFunctionMode` rewrites CUDA device arguments of tensor factories, `.to()` and
  `.cuda()` to the CPU (one mechanism for every literal, including the ones newer releases add);
- `torch.cuda.current_device` answers the CPU device and `torch.cuda.synchronize` is a no-op;
- megatron's `CudaRNGStatesTracker` is replaced by a tracker that forks the CPU generator, so
  `get_cuda_rng_tracker().fork()` (layer init, attention dropout) and activation recomputation work.

`apply_cpu_compat()` is idempotent and does nothing when CUDA is available.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_CPU = torch.device("cpu")
_lock = threading.Lock()
_applied = False
_mode: _CudaToCpuMode | None = None


def _is_cuda_device(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.split(":")[0] == "cuda"
    # A bare integer device means a CUDA ordinal in torch's conventions.
    return isinstance(device, int) and not isinstance(device, bool)


class _CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA device arguments to the CPU for every torch call in this thread."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        device = kwargs.get("device")
        if device is not None and _is_cuda_device(device):
            kwargs["device"] = _CPU
        name = getattr(func, "__name__", "")
        if name == "cuda":
            # Tensor.cuda(device=None, non_blocking=False): stay on the CPU.
            return args[0]
        if name == "to" and len(args) > 1 and _is_cuda_device(args[1]):
            args = (args[0], _CPU, *args[2:])
        return func(*args, **kwargs)


class CpuRNGStatesTracker:
    """Named RNG streams on the CPU generator; mirrors megatron's `CudaRNGStatesTracker`.

    megatron forks a per-tensor-parallel-rank stream for weight init and dropout in TP regions; on
    CPU all random ops draw from the default CPU generator, so the fork swaps its state.
    """

    def __init__(self, use_cudagraphable_rng: bool = False, is_inference_rng_tracker: bool = False):
        self.use_cudagraphable_rng = False
        self.is_inference_rng_tracker = is_inference_rng_tracker
        self.reset()

    def is_initialized(self) -> bool:
        return self._is_initialized

    def reset(self) -> None:
        self._is_initialized = False
        self.states_: dict[str, torch.Tensor] = {}
        self.seeds_: set[int] = set()
        self._current_state_name = "default-rng"

    def get_states(self) -> dict[str, torch.Tensor]:
        return dict(self.states_)

    def set_states(self, states: dict[str, torch.Tensor]) -> None:
        self._is_initialized = True
        self.states_ = states

    def add(self, name: str, seed: int) -> None:
        self._is_initialized = True
        if seed in self.seeds_:
            raise RuntimeError(f"RNG seed {seed} is already tracked")
        if name in self.states_:
            raise RuntimeError(f"RNG state {name!r} already exists")
        self.seeds_.add(seed)
        generator = torch.Generator(device="cpu")
        generator.manual_seed(seed)
        self.states_[name] = generator.get_state()

    @contextlib.contextmanager
    def fork(self, name: str = "model-parallel-rng") -> Iterator[None]:
        if name not in self.states_:
            raise RuntimeError(f"RNG state {name!r} is not added")
        outer_state = torch.get_rng_state()
        outer_name = self._current_state_name
        if outer_name != "default-rng":
            self.states_[outer_name] = outer_state
        torch.set_rng_state(self.states_[name])
        self._current_state_name = name
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            if outer_name != "default-rng":
                outer_state = self.states_[outer_name]
            torch.set_rng_state(outer_state)
            self._current_state_name = outer_name


def _patch_rng_tracker() -> None:
    from megatron.core.tensor_parallel import random as mpu_random

    # initialize_rng_tracker() looks the class up by name at call time.
    mpu_random.CudaRNGStatesTracker = CpuRNGStatesTracker
    # Activation recomputation saves and restores "the CUDA state": on CPU that is the CPU state.
    mpu_random._get_cuda_rng_state = lambda *args, **kwargs: torch.get_rng_state()
    mpu_random._set_cuda_rng_state = lambda new_state, *args, **kwargs: torch.set_rng_state(new_state)
    # A tracker created before the patch (by an early import) must be rebuilt.
    tracker = getattr(mpu_random, "_CUDA_RNG_STATE_TRACKER", None)
    if tracker is not None and not isinstance(tracker, CpuRNGStatesTracker):
        mpu_random.initialize_rng_tracker(force_reset=True)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def apply_cpu_compat() -> bool:
    """Install the CPU redirections once. Returns True when they are active in this process."""
    global _applied, _mode
    if cuda_available():
        return False
    with _lock:
        if _applied:
            return True
        torch.cuda.current_device = lambda: _CPU  # type: ignore[assignment]
        torch.cuda.synchronize = lambda device=None: None  # type: ignore[assignment]
        _patch_rng_tracker()
        _mode = _CudaToCpuMode()
        _mode.__enter__()  # stays active for the life of the process (this thread)
        _applied = True
    return True

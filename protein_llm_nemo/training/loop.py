"""The training loop, top to bottom: next global batch -> step -> log -> validate -> checkpoint.

Everything it touches is built elsewhere (`sft.py` / `ssl.py`): model chunks wrapped in megatron DDP, the
megatron optimizer and scheduler, a batch source with a resumable position, a `MetricsLogger`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist

from protein_llm_nemo.runtime import get_logger
from protein_llm_nemo.training.checkpoint import save_checkpoint
from protein_llm_nemo.training.config import CheckpointConfig, TrainConfig
from protein_llm_nemo.training.metrics import MetricsLogger, peak_memory_bytes
from protein_llm_nemo.training.microbatch import MicroBatch
from protein_llm_nemo.training.result import TrainResult
from protein_llm_nemo.training.step import StepOutput, evaluate, train_step

logger = get_logger(__name__)


class BatchSource(Protocol):
    schedule_seq_length: int
    schedule_micro_batch_size: int

    def next_step(self) -> list[MicroBatch]: ...
    def all_microbatches(self, max_batches: int | None = None) -> list[MicroBatch]: ...
    def state_dict(self) -> dict: ...


@dataclass
class LoopParts:
    model_chunks: list[torch.nn.Module]
    optimizer: Any
    scheduler: Any
    forward_step: Any
    train_data: BatchSource
    valid_data: BatchSource | None
    metrics: MetricsLogger
    device: torch.device
    clip_grad: float
    group_grad_norms: bool = True
    # Written into every checkpoint so `protein-llm convert export` reads the step folder directly.
    export_header: Any = None


def _sum_over_dp(values: list[float]) -> list[float]:
    from megatron.core import parallel_state

    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized():
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
        tensor = tensor.to(device) if device is not None else tensor
        dist.all_reduce(tensor, group=parallel_state.get_data_parallel_group())
    return tensor.cpu().tolist()


def validate(parts: LoopParts, max_batches: int | None) -> tuple[float, int]:
    assert parts.valid_data is not None
    microbatches = [mb.to(parts.device) for mb in parts.valid_data.all_microbatches(max_batches)]
    return evaluate(
        parts.model_chunks,
        microbatches,
        parts.forward_step,
        parts.valid_data.schedule_seq_length,
        parts.valid_data.schedule_micro_batch_size,
    )


def next_train_step(parts: LoopParts) -> tuple[list[MicroBatch], StepOutput]:
    """This rank's micro-batches of the next global batch, and the optimizer step taken on them (the loop's
    step, also what `benchmarks/sft_throughput.py` times)."""
    microbatches = [mb.to(parts.device) for mb in parts.train_data.next_step()]
    out = train_step(
        parts.model_chunks,
        parts.optimizer,
        parts.scheduler,
        microbatches,
        parts.forward_step,
        parts.train_data.schedule_seq_length,
        parts.train_data.schedule_micro_batch_size,
        clip_grad=parts.clip_grad,
        grad_norms_by_group=parts.group_grad_norms,
    )
    return microbatches, out


def train_loop(
    parts: LoopParts,
    train: TrainConfig,
    checkpoint: CheckpointConfig,
    start_step: int = 0,
    valid_max_batches: int | None = None,
) -> TrainResult:
    result = TrainResult(
        start_step=start_step, steps=start_step, metrics_path=_path(parts.metrics.jsonl_path)
    )
    last_step = train.max_steps if train.stop_at_step is None else min(train.max_steps, train.stop_at_step)
    bad_in_a_row = 0
    started = time.perf_counter()
    saved_at = validated_at = None
    step = start_step
    while step < last_step:
        step += 1
        tick = time.perf_counter()

        # 1-2. the next global batch: forward/backward, grad all-reduce, guard, clip, update, lr
        microbatches, out = next_train_step(parts)
        (real_tokens,) = _sum_over_dp([float(sum(mb.real_tokens for mb in microbatches))])
        seconds = time.perf_counter() - tick

        # 3. NaN/Inf guard: the update was skipped; stop after too many in a row
        result.steps = step
        result.losses.append(out.loss if not out.skipped else float("nan"))
        if out.skipped:
            bad_in_a_row += 1
            result.skipped_steps += 1
            logger.warning(
                "step %d skipped: loss %s, grad norm %s (%d in a row)",
                step,
                out.loss,
                out.grad_norm,
                bad_in_a_row,
            )
            if bad_in_a_row >= train.nan_guard_max_consecutive:
                logger.error("stopping: %d non-finite steps in a row", bad_in_a_row)
                result.stopped_early = True
                break
        else:
            bad_in_a_row = 0
            result.tokens += out.loss_tokens

        # 4. metrics
        tokens_per_s = real_tokens / seconds if seconds > 0 else 0.0
        if step % max(train.log_interval, 1) == 0 or step == last_step:
            metrics = {
                "train/loss": out.loss,
                "train/grad_norm": out.grad_norm,
                "train/loss_tokens": out.loss_tokens,
                "train/skipped": float(out.skipped),
                "throughput/tokens_per_s": tokens_per_s,
                "throughput/loss_tokens_per_s": out.loss_tokens / seconds if seconds > 0 else 0.0,
                "throughput/step_seconds": seconds,
                "memory/peak_bytes": peak_memory_bytes(),
            }
            metrics.update({f"grad_norm/{group}": norm for group, norm in out.group_grad_norms.items()})
            metrics.update({f"lr/{group}": lr for group, lr in out.learning_rates.items()})
            parts.metrics.log(step, metrics)
        parts.metrics.progress(step, out.loss, tokens_per_s, out.learning_rates.get("main", math.nan))

        # 5. validation
        if parts.valid_data is not None and train.eval_interval and step % train.eval_interval == 0:
            result.valid_losses[step] = _validate_and_log(parts, step, valid_max_batches)
            validated_at = step

        # 6. checkpoint
        if checkpoint.dir and checkpoint.save_interval and step % checkpoint.save_interval == 0:
            result.checkpoint_dir = _save(parts, checkpoint, step)
            saved_at = step

    if parts.valid_data is not None and validated_at != step and step > start_step:
        result.valid_losses[step] = _validate_and_log(parts, step, valid_max_batches)
    stopping_for_resume = train.stop_at_step is not None and step == train.stop_at_step
    if (
        checkpoint.dir
        and saved_at != step
        and step > start_step
        and (checkpoint.save_final or stopping_for_resume)
    ):
        result.checkpoint_dir = _save(parts, checkpoint, step)
    result.elapsed_s = time.perf_counter() - started
    result.tokens_per_s = result.tokens / result.elapsed_s if result.elapsed_s > 0 else 0.0
    result.peak_memory_bytes = peak_memory_bytes()
    parts.metrics.close()
    return result


def _validate_and_log(parts: LoopParts, step: int, max_batches: int | None) -> float:
    loss, tokens = validate(parts, max_batches)
    parts.metrics.log(step, {"valid/loss": loss, "valid/loss_tokens": tokens})
    logger.info("step %d: validation loss %.4f over %d response tokens", step, loss, tokens)
    return loss


def _save(parts: LoopParts, checkpoint: CheckpointConfig, step: int) -> str:
    tick = time.perf_counter()
    path = save_checkpoint(
        checkpoint.dir,
        step,
        parts.model_chunks,
        parts.optimizer,
        parts.scheduler,
        parts.train_data.state_dict(),
        keep_last=checkpoint.keep_last,
        export_header=parts.export_header,
    )
    parts.metrics.log(step, {"checkpoint/save_seconds": time.perf_counter() - tick})
    logger.info("step %d: checkpoint %s (%.1fs)", step, path, time.perf_counter() - tick)
    return str(path)


def _path(path) -> str | None:
    return str(path) if path is not None else None


@dataclass
class Session:
    """Everything a run is made of, built and restored, before the first step (also what tests and
    dry-runs inspect): `train_loop(session.parts, ...)` runs it."""

    config: Any
    model: Any
    parts: LoopParts
    start_step: int

    def run(self) -> TrainResult:
        return train_loop(
            self.parts,
            self.config.train,
            self.config.checkpoint,
            self.start_step,
            self.config.data.valid_max_batches,
        )

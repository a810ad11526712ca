"""megatron's `torch_dist` checkpoint save with no helper processes, so a killed rank leaves none behind.

megatron-core 0.16's default save (`TorchDistSaveShardedStrategy`, also when saving synchronously) starts
processes that outlive a SIGKILL of the rank (dist_checkpointing/strategies/filesystem_async.py):

- `_get_write_results_queue` (l. 51-56) starts a `spawn` `multiprocessing.Manager` server on the first save
  and keeps it for the life of the rank; it re-imports the rank's `__main__` and, with no parent to shut it
  down, serves forever (keeping multiprocessing's resource tracker alive too);
- `write_preloaded_data_multiproc` (l. 266-303) forks one writer per file (`thread_count`, 2) and waits in
  `count_queue.join()` (l. 308); the last writer's `count_queue.task_done()` (l. 412) notifies that
  `JoinableQueue`'s condition, whose `notify` waits for every registered sleeper to wake
  (multiprocessing/synchronize.py, `self._woken_count.acquire()`), and the sleeper was the dead rank: the
  writer, a copy-on-write image of the rank, blocks forever.

`InProcessSaveStrategy` is that strategy with the same files and format (loadable by the default
strategy), its results queue an in-process queue and each file written on a thread of the rank: a SIGKILL
takes the whole save with it.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from megatron.core.dist_checkpointing.strategies import filesystem_async
from megatron.core.dist_checkpointing.strategies.async_utils import AsyncRequest
from megatron.core.dist_checkpointing.strategies.filesystem_async import FileSystemWriterAsync
from megatron.core.dist_checkpointing.strategies.torch import TorchDistSaveShardedStrategy


class InProcessSaveStrategy(TorchDistSaveShardedStrategy):
    """`dist_checkpointing.save(..., sharded_strategy=InProcessSaveStrategy())`: synchronous saves only."""

    def __init__(self, thread_count: int = 2) -> None:
        super().__init__("torch_dist", 1, thread_count=thread_count)

    def async_save(self, sharded_state_dict: Any, checkpoint_dir: Any) -> AsyncRequest:
        with _in_process_results_queue():
            return super().async_save(sharded_state_dict, checkpoint_dir)

    def _get_save_and_finalize_callbacks(self, writer: Any, save_state_dict_ret: Any) -> AsyncRequest:
        request = super()._get_save_and_finalize_callbacks(writer, save_state_dict_ret)
        if request.async_fn is None:  # nothing to write on this rank
            return request
        # megatron's save function is `partial(write_preloaded_data_multiproc, transforms, use_msc)`
        return request._replace(async_fn=partial(write_buckets_in_threads, *request.async_fn.args))


@contextlib.contextmanager
def _in_process_results_queue() -> Iterator[None]:
    # The writer takes its results queue from this module function while the save is planned.
    original = filesystem_async._get_write_results_queue
    filesystem_async._get_write_results_queue = queue.SimpleQueue
    try:
        yield
    finally:
        filesystem_async._get_write_results_queue = original


def write_buckets_in_threads(
    transform_list: list, use_msc: bool, rank: int, write_buckets: list, results_queue: Any
) -> None:
    """`write_preloaded_data_multiproc` on threads: each bucket to its file (megatron's
    `write_preloaded_data`, fsync included), then {bucket: write results} or the first error into
    `results_queue`, where the writer's `retrieve_write_results` reads it."""
    local_results: queue.Queue = queue.Queue()
    done: queue.Queue = queue.Queue()  # `write_preloaded_data` takes one item and marks it done
    for index in range(len(write_buckets)):
        done.put(index)
    write = partial(
        FileSystemWriterAsync.write_preloaded_data, transform_list, use_fsync=True, use_msc=use_msc
    )
    with ThreadPoolExecutor(max_workers=len(write_buckets), thread_name_prefix="checkpoint-writer") as pool:
        futures = [
            pool.submit(write, index, bucket, local_results, done)
            for index, bucket in enumerate(write_buckets)
        ]
    outcome: dict[int, list] | Exception = {}
    for future in futures:
        if future.exception() is not None:  # failed outside its own error handling
            outcome = RuntimeError(f"checkpoint writer failed: {future.exception()!r}")
    while not isinstance(outcome, Exception) and not local_results.empty():
        index, results = local_results.get()
        if isinstance(results, Exception):
            outcome = results
        else:
            outcome[index] = results
    results_queue.put(outcome)

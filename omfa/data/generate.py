"""Generating a synthetic dataset: shards in parallel worker processes, resumable.

`generate(root, config)` plans every shard of every split, skips those
already written, and hands the rest to a pool of worker processes (each
owns one `FittingRoom`, so one OpenGL context). Shards of the small val and
test splits come first, so an evaluation set exists early; train follows.
Progress lines report samples per second.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omfa.data.shards import FORMAT_VERSION, shard_name, write_manifest, write_shard
from omfa.data.synthetic import SPLITS, SynthConfig, sample_spec, split_presets

DEFAULT_SHARD_SIZE = 100
_ORDER = ("val", "test", "train")


@dataclass(frozen=True)
class ShardTask:
    """Samples [start, stop) of `split`, stored as shard `index`."""

    split: str
    index: int
    start: int
    stop: int


@dataclass(frozen=True)
class GenerationReport:
    samples: int  # written in this run
    seconds: float
    skipped_shards: int

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def plan(config: SynthConfig, shard_size: int) -> list[ShardTask]:
    """Every shard of every split, val and test first."""
    if shard_size < 1:
        raise ValueError(f"shard size {shard_size} is too small; use 1 or more samples per shard")
    tasks = []
    for split in _ORDER:
        count = config.counts.get(split, 0)
        for index, start in enumerate(range(0, count, shard_size)):
            tasks.append(ShardTask(split, index, start, min(count, start + shard_size)))
    return tasks


def manifest(config: SynthConfig, partition: dict[str, tuple[str, ...]], shard_size: int) -> dict:
    """The dataset.json content: everything needed to regenerate (or resume) the data."""
    return {
        "version": FORMAT_VERSION,
        "config": config.to_json(),
        "shard_size": shard_size,
        "presets": {split: list(partition[split]) for split in SPLITS},
    }


# One FittingRoom per worker process (an OpenGL context cannot be shared).
_worker: dict = {}


def _init_worker(config: SynthConfig, partition: dict[str, tuple[str, ...]], root: str) -> None:
    from omfa.data.fitting_room import FittingRoom

    _worker.update(room=FittingRoom(size_hw=config.size_hw), config=config, partition=partition, root=Path(root))


def _make_shard(task: ShardTask) -> tuple[ShardTask, float]:
    start_time = time.perf_counter()
    room, config, partition = _worker["room"], _worker["config"], _worker["partition"]
    specs = [sample_spec(config, task.split, i, room.presets, partition) for i in range(task.start, task.stop)]
    # Render grouped by identity (the body is reshaped once per identity), store in index order.
    rendered = {spec.index: None for spec in specs}
    for spec in sorted(specs, key=lambda s: (s.identity.identity_id, s.index)):
        rendered[spec.index] = room.render(spec)
    write_shard(_worker["root"] / task.split, task.index, (rendered[spec.index] for spec in specs))
    return task, time.perf_counter() - start_time


def generate(
    root: str | Path,
    config: SynthConfig,
    workers: int = 2,
    shard_size: int = DEFAULT_SHARD_SIZE,
    log: Callable[[str], None] = print,
) -> GenerationReport:
    """Write (or finish writing) the dataset under `root`; returns what this run produced."""
    from omfa.pose.presets import load_presets

    root = Path(root)
    partition = split_presets(list(load_presets()), config.preset_seed)
    write_manifest(root, manifest(config, partition, shard_size))
    tasks = plan(config, shard_size)
    todo = [t for t in tasks if not (root / t.split / f"{shard_name(t.index)}.json").is_file()]
    total = sum(t.stop - t.start for t in todo)
    written = len(tasks) - len(todo)
    log(f"{written} of {len(tasks)} shards already written; {total} samples to render with {workers} workers")
    done, start = 0, time.perf_counter()

    def report(task: ShardTask, seconds: float) -> None:
        nonlocal done
        done += task.stop - task.start
        elapsed = time.perf_counter() - start
        rate = done / elapsed
        log(
            f"{task.split} {shard_name(task.index)}: {task.stop - task.start} samples in {seconds:.1f} s; "
            f"{done}/{total} at {rate:.2f} samples/s, {(total - done) / max(rate, 1e-9) / 60:.1f} min left"
        )

    if workers <= 1:
        _init_worker(config, partition, str(root))
        try:
            for task in todo:
                report(*_make_shard(task))
        finally:
            _worker.pop("room").close()
    elif todo:
        context = multiprocessing.get_context("spawn")  # fresh processes: no inherited OpenGL state
        with context.Pool(workers, initializer=_init_worker, initargs=(config, partition, str(root))) as pool:
            for result in pool.imap_unordered(_make_shard, todo):
                report(*result)
    seconds = time.perf_counter() - start
    report_ = GenerationReport(done, seconds, len(tasks) - len(todo))
    log(f"done: {done} samples in {seconds:.1f} s ({report_.samples_per_second:.2f} samples/s)")
    return report_

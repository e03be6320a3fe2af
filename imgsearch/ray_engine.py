"""Indexing, phase B on a Ray cluster (`imgsearch index --engine ray`).

The driver (the process that holds the writer lock) cuts the work into deterministic shards
(shards.py), merges the shard files a killed run left on disk, and streams the rest through a
Ray Data pipeline:

  shard rows --decode (CPU tasks)--> images as pixels --model 1 actors--> ... --model M actors--> vectors

The decode stage runs decode.read_and_decode, the local engine's own code, once per image for
all models; each model stage is a pool of actors that load their model once and run its own
preprocess and encode, the local engine's calls, on the pixels. With GPU workers the decode
stage is separate CPU tasks, so GPUs never wait on JPEG decoding; on CPUs alone Ray fuses it
into the first model's actors (same resources), which saves shipping pixels between processes.
Vectors (2 KB an image at dim 512) come back to the driver, which writes each shard's file when
its last image arrives and commits it into SQLite (merge.py): only the photos and the model
weights need to be on storage the workers can read.

Faults: Ray retries a failed decode task and restarts a dead actor (Ray Data's defaults); a
lost node's blocks are recomputed from lineage; the driver keys rows by image id, so a piece
delivered twice is counted once. A killed driver loses only the shards in flight.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import ray
import torch
from PIL import Image
from ray.data import ActorPoolStrategy

from . import shards
from .decode import read_and_decode
from .embed import EmbedTally, decode_side
from .errors import DecodeError, ImgsearchError, ModelUnavailable, UsageError, first_line
from .merge import MergeTally, merge_shard
from .models import get_model
from .models.base import default_device
from .progress import NullProgress, Progress
from .ray_options import RayOptions
from .shards import SHARD_DIR, Shard, ShardModel, plan, shard_models
from .store import ModelRow, Store

LOCAL_OBJECT_STORE_BYTES = 512 * 2**20  # a cluster started here for one run: pixels in flight, not a cache
# "No value" travels as an empty string: Ray Data turns a column of Nones into NaNs.
NONE = ""


@dataclass
class ShardReport:
    planned: int = 0  # shards of this run
    from_disk: int = 0  # complete files a killed run left, merged without computing
    from_disk_vectors: int = 0  # their vectors: committed now, computed by the killed run
    computed: int = 0
    stale_removed: int = 0  # files of an earlier plan whose work changed since
    images: int = 0  # images in this run's shards


def embed_with_ray(store: Store, models: Sequence, rows: Sequence[ModelRow], tally: EmbedTally,
                   options: RayOptions, *, root: str | None = None, batch_size: int = 32,
                   progress: Progress = NullProgress) -> ShardReport:
    """Embed every image under root that lacks a vector of one of the models, on Ray; each
    shard is committed into the store as it completes. The caller holds the WriteLock.

    tally.embedded counts the vectors this run computed, as the local engine's does (its
    images/s is this run's work); what a killed run left in shard files is committed too but
    counted apart, in the report's from_disk_vectors."""
    options = options.check()
    targets = shard_models(models, rows)
    folder = os.path.join(store.index_dir, SHARD_DIR)
    shards.remove_temp_files(folder)
    planned = plan(store, targets, root, options.shard_size)
    report = ShardReport(planned=len(planned), images=sum(len(s) for s in planned))
    merged, left = MergeTally(), MergeTally()
    bar = progress(total=report.images, desc="embedding")
    try:
        todo = []
        for shard in planned:
            if shards.is_complete(shard, folder):
                merge_shard(store, shard, targets, folder, left)
                report.from_disk += 1
                bar.update(len(shard))
            else:
                todo.append(shard)
        if todo:
            with connected(options.address):
                for shard, table in run_shards(todo, targets, options, batch_size, decode_side(models)):
                    shards.write(table, shard.file(folder))
                    merge_shard(store, shard, targets, folder, merged)
                    report.computed += 1
                    bar.update(len(shard))
        for path in shards.stale_files(folder, planned):
            os.unlink(path)
            report.stale_removed += 1
    finally:
        bar.close()
        for spec, n in merged.embedded.items():
            tally.embedded[spec] = tally.embedded.get(spec, 0) + n
        report.from_disk_vectors = sum(left.embedded.values())
        tally.skipped += left.skipped + merged.skipped
    return report


@contextmanager
def connected(address: str | None):
    """Join the cluster at address, or start a local one; leave a cluster joined before as is."""
    if ray.is_initialized():
        yield
        return
    # "local": a new cluster, never one that $RAY_ADDRESS or /tmp/ray/ray_current_cluster names
    # (a cluster that died uncleanly leaves that file, and Ray would try to join it).
    kwargs = {"address": address} if address else {"address": "local", "object_store_memory": LOCAL_OBJECT_STORE_BYTES}
    try:
        ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UsageError(f"cannot connect to the Ray cluster at {address or 'a new local one'}: {first_line(e)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def run_shards(todo: Sequence[Shard], targets: Sequence[ShardModel], options: RayOptions,
               batch_size: int, min_side: int) -> Iterator[tuple[Shard, pa.Table]]:
    """Compute shards on the joined cluster; yield each (shard, its result table) as its last
    image comes back. Nothing is written here."""
    # Ray Data's INFO lines and progress bars would interleave with imgsearch's own bar.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    ds = ray.data.from_items([_shard_row(i, shard) for i, shard in enumerate(todo)],
                             override_num_blocks=len(todo))
    gpu = options.gpus_per_worker > 0
    # CPU only: the same resources as the first model's actors, so that Ray fuses decoding into them.
    ds = ds.map_batches(decode_shards, batch_size=1, fn_kwargs={"piece": batch_size, "min_side": min_side},
                        num_cpus=1 if gpu else options.cpus_per_worker)
    pool = options.workers or _pool_size(options)
    # Every actor starts at once (no more than there are shards): Ray's autoscaling pool would
    # start one and add the others only once work queues behind it, minutes into a short run.
    start = min(pool, len(todo))
    for slot, target in enumerate(targets):
        # Fused with decoding (CPU only), a batch size here would count shard rows, not images:
        # Ray would bundle 32 shards into one task on one actor. Fused, the actor takes what one
        # shard's decoding yields and cuts it into batches itself.
        fused = slot == 0 and not gpu
        ds = ds.map_batches(
            EmbedActor, batch_size=None if fused else batch_size,
            compute=ActorPoolStrategy(min_size=1, max_size=pool, initial_size=start),
            fn_constructor_kwargs={"target": target, "slot": slot, "batch_size": batch_size,
                                   "gpu": gpu, "threads": max(1, int(options.cpus_per_worker)),
                                   "last": slot == len(targets) - 1},
            num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker or None,
        )
    arrived: dict[int, dict[int, tuple]] = {i: {} for i in range(len(todo))}
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            touched = set()
            for j, shard_index in enumerate(batch["shard"].tolist()):
                # keyed by image id: a piece that a retried task delivers again counts once
                arrived[shard_index][int(batch["image_id"][j])] = _result_row(batch, j, targets)
                touched.add(shard_index)
            for shard_index in sorted(touched):
                if len(arrived[shard_index]) == len(todo[shard_index]):
                    yield todo[shard_index], _table(todo[shard_index], arrived.pop(shard_index), targets)
    except ray.exceptions.RayError as e:  # a user-code failure too (UserCodeException is one)
        raise ImgsearchError(f"the Ray run failed: {_cause(e)}") from None
    unfinished = [todo[i].name for i, rows in arrived.items()]
    if unfinished:
        raise ImgsearchError(f"the Ray run ended with {len(unfinished)} shards incomplete (first: {unfinished[0]}); "
                             "run the same command again to finish them")


def decode_shards(batch: dict, piece: int, min_side: int) -> Iterator[dict]:
    """Ray task: shard rows in; their images out, decoded by the local engine's code, in pieces."""
    for shard_index, ids, paths, needs in zip(batch["shard"], batch["ids"], batch["paths"], batch["needs"]):
        for start in range(0, len(ids), piece):
            out = _empty_piece()
            for image_id, path, need in zip(ids[start:start + piece], paths[start:start + piece], needs[start:start + piece]):
                out["shard"].append(int(shard_index))
                out["image_id"].append(int(image_id))
                out["need"].append(int(need))
                try:
                    decoded = read_and_decode(os.fsdecode(bytes(path)), min_side=min_side)
                except DecodeError as e:
                    _append_failure(out, str(e))
                    continue
                out["error"].append(NONE)
                out["hash"].append(decoded.hash)
                out["width"].append(decoded.width)
                out["height"].append(decoded.height)
                out["taken_at"].append(decoded.exif.get("taken_at") or NONE)
                out["camera"].append(decoded.exif.get("camera") or NONE)
                out["pixels"].append(np.asarray(decoded.image))
            yield _as_batch(out)


class EmbedActor:
    """One model, loaded once per actor: preprocess (in threads) and encode the images of a
    batch that need it. Refuses to start on a worker whose weights differ from the driver's."""

    def __init__(self, target: ShardModel, slot: int, batch_size: int, gpu: bool, threads: int, last: bool):
        # The GPU Ray gave this actor (CUDA_VISIBLE_DEVICES), or the CPU where torch sees none:
        # a resource that only names a GPU, as in the tests' simulated cluster.
        device = default_device() if gpu else "cpu"
        self.model = get_model(target.spec, device=device, precision=target.precision)
        fingerprint = self.model.fingerprint()
        if fingerprint != target.fingerprint:
            raise ModelUnavailable(
                f"{target.spec}: this worker's weights ({fingerprint}) differ from the driver's "
                f"({target.fingerprint}); put the checkpoint on storage every node reads")
        self.slot, self.batch_size, self.last, self.dim = slot, batch_size, last, target.dim
        self.pool = ThreadPoolExecutor(threads)

    def __call__(self, batch: dict) -> dict:
        n = len(batch["image_id"])
        errors = [str(e) for e in batch["error"]]
        wanted = [i for i in range(n) if errors[i] == NONE and int(batch["need"][i]) >> self.slot & 1]
        prepared = list(self.pool.map(lambda i: self._preprocess(batch["pixels"][i]), wanted))
        vectors = np.zeros((n, self.dim), dtype=np.float32)
        ok = []
        for i, (tensor, error) in zip(wanted, prepared):
            if error is None:
                ok.append((i, tensor))
            else:
                errors[i] = error
        for start in range(0, len(ok), self.batch_size):
            part = ok[start:start + self.batch_size]
            pixels = self.model.scale_pixels(torch.stack([t for _, t in part]))
            vectors[[i for i, _ in part]] = self.model.encode_pixels(pixels)
        batch[f"vector_{self.slot}"] = vectors
        batch["error"] = np.asarray(errors, dtype=str)
        if self.last:
            del batch["pixels"]  # the driver needs vectors, not pixels
        return batch

    def _preprocess(self, pixels: np.ndarray) -> tuple[torch.Tensor | None, str | None]:
        try:
            return self.model.pixels(Image.fromarray(pixels)), None
        except Exception as e:  # as locally: a transform failing on one odd image must not stop the run
            return None, f"cannot preprocess: {e.__class__.__name__}: {str(e)[:200]}"


def _shard_row(index: int, shard: Shard) -> dict:
    return {"shard": index, "ids": shard.image_ids, "paths": [os.fsencode(p) for p in shard.paths],
            "needs": shard.needs}


def _empty_piece() -> dict[str, list]:
    return {name: [] for name in ("shard", "image_id", "need", "error", "hash", "width", "height", "taken_at",
                                  "camera", "pixels")}


def _append_failure(out: dict, error: str) -> None:
    out["error"].append(error)
    for name in ("hash", "taken_at", "camera"):
        out[name].append(NONE)
    for name in ("width", "height"):
        out[name].append(0)
    out["pixels"].append(np.zeros((1, 1, 3), dtype=np.uint8))


def _as_batch(out: dict) -> dict:
    batch = {name: np.asarray(out[name], dtype=np.int64) for name in ("shard", "image_id", "need", "width", "height")}
    for name in ("error", "hash", "taken_at", "camera"):
        batch[name] = np.asarray(out[name], dtype=str)
    batch["pixels"] = _objects(out["pixels"])
    return batch


def _objects(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _result_row(batch: dict, j: int, targets: Sequence[ShardModel]) -> tuple:
    error = str(batch["error"][j]) or None
    if error is None:
        meta = (None, str(batch["hash"][j]), int(batch["width"][j]), int(batch["height"][j]),
                str(batch["taken_at"][j]) or None, str(batch["camera"][j]) or None)
    else:
        meta = (error, None, None, None, None, None)
    need = int(batch["need"][j])
    vectors = {m.id: np.array(batch[f"vector_{slot}"][j], dtype=np.float32)
               for slot, m in enumerate(targets) if error is None and need >> slot & 1}
    return meta, vectors


def _table(shard: Shard, rows: dict[int, tuple], targets: Sequence[ShardModel]):
    columns: dict[str, list] = {name: [] for name in shards.META_COLUMNS}
    vectors: dict[int, list] = {m.id: [] for m in targets}
    for image_id in shard.image_ids.tolist():
        meta, vecs = rows[image_id]
        columns["image_id"].append(image_id)
        for name, value in zip(("error", "hash", "width", "height", "taken_at", "camera"), meta):
            columns[name].append(value)
        for m in targets:
            vectors[m.id].append(vecs.get(m.id))
    return shards.build_table(targets, columns, vectors)


def _pool_size(options: RayOptions) -> int:
    resources = ray.cluster_resources()
    if options.gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) // options.gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // options.cpus_per_worker))


def _cause(e: BaseException) -> str:
    """The user's exception behind Ray's wrapping, as one line."""
    cause = getattr(e, "cause", None) or e.__cause__
    while cause is not None and (getattr(cause, "cause", None) or cause.__cause__) is not None:
        cause = getattr(cause, "cause", None) or cause.__cause__
    return first_line(cause if cause is not None else e)

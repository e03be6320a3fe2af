"""Property: whatever happens to the folder between runs (files added, modified, renamed,
deleted, copied, folders moved, bad files), re-indexing gives the same index as indexing the
final folder from scratch: same paths and statuses, same vectors, FAISS ids == SQLite ids.

A fake model keeps each example fast: its vector is a fixed projection of the pixels, so
equal pictures get equal vectors and different ones differ, as with a real model.
"""

import io
import os
import shutil
import tempfile

import faiss
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import imgsearch.models
from imgsearch.check import check_index
from imgsearch.indexer import index_folder
from imgsearch.models.base import EmbeddingModel, ModelFamily, registry
from imgsearch.store import Store

SPEC = "fake:pixels"


class PixelModel(EmbeddingModel):
    spec, family, dim = SPEC, "fake", 16

    def __init__(self):
        self.projection = torch.randn(3 * 4 * 4, self.dim, generator=torch.Generator().manual_seed(0))

    def preprocess(self, image):
        pixels = np.asarray(image.resize((4, 4), Image.Resampling.NEAREST), dtype=np.float32) / 255
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()

    def preprocess_config(self):
        return {"size": 4, "resample": "nearest"}

    def _encode_pixels(self, batch):
        return batch.flatten(1) @ self.projection


class PixelFamily(ModelFamily):
    name = "fake"

    def canonical(self, name):
        return name

    def info(self, name):
        return {"dim": PixelModel.dim, "offline": True}

    def weights_local(self, name):
        return True

    def load(self, name, device, precision):
        return PixelModel()


@pytest.fixture(scope="module", autouse=True)
def fake_model_family():
    families = registry(*imgsearch.models.FAMILIES.values(), PixelFamily())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imgsearch.models, "FAMILIES", families)
        yield


def picture(n: int) -> bytes:
    """Picture n: its own pixels and, by its size, its own byte count (so that a modified file
    never looks unchanged by size and mtime, even within one tick of the clock)."""
    rng = np.random.default_rng(n)
    pixels = rng.integers(0, 256, (6 + n, 6, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


CONTENTS = [picture(n) for n in range(5)] + [b"", b"not an image"]  # the last two are skipped
assert len({len(c) for c in CONTENTS}) == len(CONTENTS)
NAMES = ["a.png", "b.png", "c.jpg", "sub/d.png", "sub/e.png", "sub/deep/f.png", "other/g.png"]
FOLDERS = ["sub", "other", "moved"]

operations = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(NAMES), st.integers(0, len(CONTENTS) - 1)),  # add or modify
    st.tuples(st.just("rename"), st.integers(0, 20), st.sampled_from(NAMES)),
    st.tuples(st.just("copy"), st.integers(0, 20), st.sampled_from(NAMES)),
    st.tuples(st.just("delete"), st.integers(0, 20)),
    st.tuples(st.just("move folder"), st.sampled_from(FOLDERS), st.sampled_from(FOLDERS)),
    st.tuples(st.just("index")),
)


def files_in(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names)


def apply(op, folder, index_dir) -> None:
    kind, *args = op
    present = files_in(folder)
    if kind == "write":
        path = os.path.join(folder, args[0])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(CONTENTS[args[1]])
    elif kind in ("rename", "copy") and present:
        source = os.path.join(folder, present[args[0] % len(present)])
        target = os.path.join(folder, args[1])
        if source != target:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            (os.replace if kind == "rename" else shutil.copyfile)(source, target)
    elif kind == "delete" and present:
        os.remove(os.path.join(folder, present[args[0] % len(present)]))
    elif kind == "move folder":
        source, target = os.path.join(folder, args[0]), os.path.join(folder, args[1])
        if os.path.isdir(source) and not os.path.exists(target):
            os.rename(source, target)
    elif kind == "index":
        index_folder(folder, [SPEC], index_dir)


def state(index_dir, folder) -> tuple[dict, dict]:
    """({relative path: (status, reason)}, {relative path: vector}), FAISS checked against SQLite."""
    store = Store(index_dir)
    row = store.model(SPEC)
    rows = store.images(r[0] for r in store.db.execute("select id from images")).values()
    statuses = {os.path.relpath(r["path"], folder): (r["status"], r["reason"]) for r in rows}
    ids, vectors = store.embeddings_since(row.id, row.dim, -1)
    paths = {i: os.path.relpath(r["path"], folder) for i, r in store.images(ids).items()}
    store.close()
    index = faiss.read_index(os.path.join(index_dir, row.index_file))
    in_faiss = faiss.vector_to_array(index.id_map).tolist()
    assert sorted(in_faiss) == sorted(ids.tolist()) and len(set(in_faiss)) == len(in_faiss)
    assert all(statuses[paths[i]][0] == "ok" for i in ids.tolist())
    return statuses, {paths[i]: v for i, v in zip(ids.tolist(), vectors)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, max_size=12))
def test_incremental_index_equals_a_fresh_index_of_the_final_folder(ops):
    with tempfile.TemporaryDirectory() as work:
        folder, incremental, fresh = (os.path.join(work, name) for name in ("photos", "incremental", "fresh"))
        os.makedirs(folder)
        for op in [("index",), *ops, ("index",)]:
            apply(op, folder, incremental)
        index_folder(folder, [SPEC], fresh)

        got_statuses, got_vectors = state(incremental, folder)
        want_statuses, want_vectors = state(fresh, folder)
        assert got_statuses == want_statuses
        assert sorted(got_vectors) == sorted(want_vectors)
        for path, vector in want_vectors.items():
            np.testing.assert_allclose(got_vectors[path], vector, atol=1e-5)
        assert check_index(incremental).ok

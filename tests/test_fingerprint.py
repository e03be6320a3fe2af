"""An index remembers which weights made its vectors: a checkpoint re-saved at the same path
is never scored on the old vectors."""

import os

import numpy as np
import pytest

import imgsearch.models
from imgsearch.errors import IndexMismatch
from imgsearch.indexer import index_folder
from imgsearch.models import get_model
from imgsearch.search import Searcher
from imgsearch.store import Store

from conftest import save_tiny_openclip


def root(photos) -> str:
    return os.path.dirname(next(iter(photos.values())))


def stored_vectors(index_dir, spec):
    store = Store(index_dir)
    row = store.model(spec)
    ids, vectors = next(store.iter_embeddings(row.id, row.dim))
    fingerprint = row.fingerprint
    store.close()
    return dict(zip(ids.tolist(), vectors)), fingerprint


@pytest.fixture
def resaved(tmp_path):
    """A checkpoint folder, and a function that re-saves other weights at the same path."""
    folder = tmp_path / "ckpt"
    save_tiny_openclip(folder, seed=0)

    def resave():
        save_tiny_openclip(folder, seed=7)
        imgsearch.models._load.cache_clear()  # a new process would load the new file anyway

    yield "openclip:local-dir:" + str(folder), resave
    imgsearch.models._load.cache_clear()


def test_a_checkpoint_resaved_at_the_same_path_is_embedded_again(photos, index_dir, resaved):
    spec, resave = resaved
    index_folder(root(photos), [spec], index_dir, precision="fp32")
    before, fingerprint_before = stored_vectors(index_dir, spec)
    assert fingerprint_before.startswith("sha256:")

    again = index_folder(root(photos), [spec], index_dir, precision="fp32")
    assert again.embedded[spec] == 0  # same weights: nothing to do

    resave()
    report = index_folder(root(photos), [spec], index_dir, precision="fp32")
    assert report.embedded[spec] == len(photos)
    assert any("weights changed" in note for note in report.notes)
    after, fingerprint_after = stored_vectors(index_dir, spec)
    assert fingerprint_after != fingerprint_before
    assert set(after) == set(before)
    assert all(not np.allclose(after[i], before[i], atol=1e-3) for i in after)
    assert get_model(spec, precision="fp32").fingerprint() == fingerprint_after


def test_a_search_with_other_weights_than_the_index_is_refused(photos, index_dir, resaved):
    spec, resave = resaved
    index_folder(root(photos), [spec], index_dir, precision="fp32")
    resave()
    with pytest.raises(IndexMismatch, match="other weights"):
        Searcher(spec, index_dir, precision="fp32")


def test_local_weights_are_hashed_and_wheel_weights_named_by_version(tiny_openclip, tiny_openclip_b):
    a = get_model(tiny_openclip, precision="fp32").fingerprint()
    assert a.startswith("sha256:") and a != get_model(tiny_openclip_b, precision="fp32").fingerprint()
    assert get_model("bridge:lite0", precision="fp32").fingerprint().startswith("wheels: efficientnet_lite_pytorch ")

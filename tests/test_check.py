"""`check_index`: finds every way SQLite and the FAISS files can disagree; repair mends them."""

import json
import os

import faiss
import numpy as np
import pytest
import skimage.data
from PIL import Image

import imgsearch.check
from imgsearch.check import check_index
from imgsearch.errors import IndexLocked, ModelUnavailable, UsageError
from imgsearch.indexer import index_folder
from imgsearch.lock import WriteLock
from imgsearch.search import Searcher
from imgsearch.store import Store


@pytest.fixture
def photos(tmp_path) -> dict[str, str]:
    """Seven real photos, made small: these tests are about bookkeeping, not pixels."""
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = {}
    for name, load in [("cat", skimage.data.chelsea), ("astronaut", skimage.data.astronaut),
                       ("coffee", skimage.data.coffee), ("rocket", skimage.data.rocket),
                       ("camera", skimage.data.camera), ("coins", skimage.data.coins), ("horse", skimage.data.horse)]:
        path = paths[f"{name}.png"] = str(folder / f"{name}.png")
        Image.fromarray(load()).convert("RGB").resize((48, 40)).save(path)
    return paths


@pytest.fixture
def indexed(photos, index_dir, tiny_openclip) -> str:
    index_folder(os.path.dirname(photos["cat.png"]), [tiny_openclip], index_dir)
    return index_dir


def faiss_file(index_dir, spec) -> str:
    store = Store(index_dir)
    path = os.path.join(index_dir, store.model(spec).index_file)
    store.close()
    return path


def stored_vectors(index_dir, spec) -> dict[int, np.ndarray]:
    store = Store(index_dir)
    row = store.model(spec)
    ids, vectors = store.embeddings_since(row.id, row.dim, -1)
    store.close()
    return dict(zip(ids.tolist(), vectors))


def edit_faiss(index_dir, spec, change) -> None:
    """Change the saved FAISS file behind the database's back."""
    path = faiss_file(index_dir, spec)
    index = faiss.read_index(path)
    change(index)
    faiss.write_index(index, path)


def run_sql(index_dir, sql, params=()) -> None:
    store = Store(index_dir)
    store.db.execute(sql, list(params))
    store.close()


def top_paths(index_dir, spec) -> list[str]:
    searcher = Searcher(spec, index_dir)
    paths = [r["path"] for r in searcher.text("a photo", k=20).results]
    searcher.close()
    return paths


def test_a_healthy_index_passes(indexed, tiny_openclip):
    report = check_index(indexed)
    assert report.ok and report.problems() == [] and report.notes() == []
    [model] = report.models
    assert (model.spec, model.vectors, model.faiss_vectors, model.differing_vectors) == (tiny_openclip, 7, 7, 0)
    assert report.images == {"ok": 7}
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True


def first_id(index_dir, spec) -> int:
    return min(stored_vectors(index_dir, spec))


def extra_id(index_dir, spec):
    edit_faiss(index_dir, spec, lambda index: index.add_with_ids(np.ones((1, 32), np.float32) / np.sqrt(32),
                                                                 np.array([999], dtype=np.int64)))


def duplicated_id(index_dir, spec):
    image_id = first_id(index_dir, spec)
    vector = stored_vectors(index_dir, spec)[image_id][None, :]
    edit_faiss(index_dir, spec, lambda index: index.add_with_ids(vector, np.array([image_id], dtype=np.int64)))


def missing_id(index_dir, spec):
    image_id = first_id(index_dir, spec)
    edit_faiss(index_dir, spec, lambda index: index.remove_ids(np.array([image_id], dtype=np.int64)))


def differing_vector(index_dir, spec):
    image_id = first_id(index_dir, spec)

    def replace(index):
        index.remove_ids(np.array([image_id], dtype=np.int64))
        index.add_with_ids(-stored_vectors(index_dir, spec)[image_id][None, :], np.array([image_id], dtype=np.int64))
    edit_faiss(index_dir, spec, replace)


def damaged_stored_vector(index_dir, spec):
    run_sql(index_dir, "update embeddings set vector = ? where image_id = ?",
            [np.full(32, np.nan, np.float32).tobytes(), first_id(index_dir, spec)])


def short_stored_vector(index_dir, spec):
    run_sql(index_dir, "update embeddings set vector = ? where image_id = ?",
            [b"\x00" * 12, first_id(index_dir, spec)])


def vector_of_a_skipped_image(index_dir, spec):
    run_sql(index_dir, "update images set status = 'skipped', reason = 'test' where id = ?",
            [first_id(index_dir, spec)])


def image_without_its_vector(index_dir, spec):
    run_sql(index_dir, "delete from embeddings where image_id = ?", [first_id(index_dir, spec)])


def pending_image(index_dir, spec):
    image_id = first_id(index_dir, spec)
    run_sql(index_dir, "delete from embeddings where image_id = ?", [image_id])
    run_sql(index_dir, "update images set status = 'pending' where id = ?", [image_id])


@pytest.mark.parametrize("damage, problem, embeds", [
    (extra_id, "1 ids in the FAISS index are not in the database", 0),
    (duplicated_id, "1 ids appear more than once in the FAISS index", 0),
    (missing_id, "1 vectors in the database are missing from the FAISS index", 0),
    (differing_vector, "1 FAISS vectors differ from the database's", 0),
    (damaged_stored_vector, "1 stored vectors are damaged (wrong length, not finite or not unit)", 1),
    (short_stored_vector, "1 stored vectors are damaged (wrong length, not finite or not unit)", 1),
    (vector_of_a_skipped_image, "1 vectors belong to images that are gone or skipped", 0),
    (image_without_its_vector, "1 indexed images have no vector", 1),
    (pending_image, "1 images are pending (an interrupted run)", 1),
])
def test_each_disagreement_is_found_and_repaired(indexed, tiny_openclip, damage, problem, embeds):
    before = stored_vectors(indexed, tiny_openclip)
    damage(indexed, tiny_openclip)

    found = check_index(indexed)
    assert not found.ok and any(problem in line for line in found.problems()), found.problems()

    repaired = check_index(indexed, repair=True)
    assert repaired.ok, repaired.problems()
    assert repaired.embedded == ({tiny_openclip: embeds} if embeds else {})
    after = stored_vectors(indexed, tiny_openclip)
    if damage is vector_of_a_skipped_image:  # its vector goes, the image stays skipped
        del before[min(before)]
    assert sorted(after) == sorted(before)
    for image_id, vector in before.items():
        np.testing.assert_allclose(after[image_id], vector, atol=1e-5)
    assert check_index(indexed).ok


def test_a_faiss_file_older_than_the_database_is_a_note_not_a_problem(indexed, tiny_openclip):
    run_sql(indexed, "update models set faiss_generation = faiss_generation - 1")  # as after a kill -9
    report = check_index(indexed)
    assert report.ok and report.notes() == [
        f"{tiny_openclip}: FAISS file is older than the database; it is caught up when loaded"]
    assert check_index(indexed, repair=True).notes() == []


def test_a_file_claiming_to_be_newer_than_it_is_is_found(photos, index_dir, tiny_openclip, tmp_path):
    """An old copy of a FAISS file put back (a backup restored): the generation numbers lie."""
    folder = os.path.dirname(photos["cat.png"])
    os.rename(photos["coins.png"], tmp_path / "coins.png")
    index_folder(folder, [tiny_openclip], index_dir)
    old = open(faiss_file(index_dir, tiny_openclip), "rb").read()
    os.rename(tmp_path / "coins.png", photos["coins.png"])
    index_folder(folder, [tiny_openclip], index_dir)
    with open(faiss_file(index_dir, tiny_openclip), "wb") as f:
        f.write(old)

    assert photos["coins.png"] not in top_paths(index_dir, tiny_openclip)
    assert "1 vectors in the database are missing from the FAISS index" in check_index(index_dir).problems()[0]
    assert check_index(index_dir, repair=True).ok
    assert photos["coins.png"] in top_paths(index_dir, tiny_openclip)


def test_an_unreadable_faiss_file_is_rebuilt_from_the_database(indexed, tiny_openclip):
    before = top_paths(indexed, tiny_openclip)
    with open(faiss_file(indexed, tiny_openclip), "wb") as f:
        f.write(b"not a FAISS index")
    [model] = check_index(indexed).models
    assert model.faiss_vectors is None and "is unreadable" in model.faiss_error
    repaired = check_index(indexed, repair=True)
    assert repaired.ok and repaired.repaired == [
        f"{tiny_openclip}: rebuilt the FAISS index from 7 stored vectors",
        f"{tiny_openclip}: saved {os.path.basename(faiss_file(indexed, tiny_openclip))}",
    ]
    assert top_paths(indexed, tiny_openclip) == before


def test_leftover_temporary_files_are_noted_and_removed(indexed):
    open(os.path.join(indexed, ".tmp-abc123.faiss"), "wb").close()  # a writer killed mid-save
    report = check_index(indexed)
    assert report.ok and report.temp_files == [".tmp-abc123.faiss"]
    assert check_index(indexed, repair=True).repaired == ["removed .tmp-abc123.faiss"]
    assert not os.path.exists(os.path.join(indexed, ".tmp-abc123.faiss"))


def test_repair_waits_for_no_writer_but_a_plain_check_runs_beside_one(indexed):
    with WriteLock(indexed):
        with pytest.raises(IndexLocked):
            check_index(indexed, repair=True)
        report = check_index(indexed)
    assert report.ok and report.writer_active
    assert "an indexer is writing to this index now" in report.notes()[0]


def test_a_model_that_cannot_load_here_leaves_the_others_repaired(photos, index_dir, tiny_openclip,
                                                                  tiny_openclip_b, monkeypatch):
    index_folder(os.path.dirname(photos["cat.png"]), [tiny_openclip, tiny_openclip_b], index_dir)
    run_sql(index_dir, "delete from embeddings where image_id = 1")
    get_model = imgsearch.check.get_model

    def only_a(spec, **kwargs):
        if spec == tiny_openclip_b:
            raise ModelUnavailable(f"cannot load weights for {spec}")
        return get_model(spec, **kwargs)

    monkeypatch.setattr(imgsearch.check, "get_model", only_a)
    report = check_index(index_dir, repair=True)
    assert report.embedded == {tiny_openclip: 1}
    assert report.problems() == [
        f"{tiny_openclip_b}: 1 indexed images have no vector",
        f"{tiny_openclip_b}: cannot embed the missing images: cannot load weights for {tiny_openclip_b}",
    ]


def test_checking_one_model_and_naming_an_unknown_one(photos, index_dir, tiny_openclip, tiny_openclip_b):
    index_folder(os.path.dirname(photos["cat.png"]), [tiny_openclip], index_dir)
    assert [m.spec for m in check_index(index_dir, models=[tiny_openclip]).models] == [tiny_openclip]
    with pytest.raises(UsageError, match=f"no index for {tiny_openclip_b}"):
        check_index(index_dir, models=[tiny_openclip_b])
    with pytest.raises(UsageError, match="no index in"):
        check_index(os.path.join(index_dir, "nothing-here"))

"""Indexing a folder with two models, then keeping it in step with the folder."""

import os
import shutil

import faiss
import numpy as np
from PIL import Image

from imgsearch.indexer import index_folder
from imgsearch.search import Searcher
from imgsearch.store import Store


def faiss_ids(index_dir, spec):
    store = Store(index_dir)
    row = store.model(spec)
    index = faiss.read_index(os.path.join(index_dir, row.index_file))
    stored = set(store.embedding_ids(row.id).tolist())
    store.close()
    return set(faiss.vector_to_array(index.id_map).tolist()), stored


def paths_found(index_dir, spec, k=50):
    searcher = Searcher(spec, index_dir)
    found = {os.path.basename(r["path"]) for r in searcher.text("a photo", k=k).results}
    searcher.close()
    return found


def test_first_run_embeds_every_photo_with_every_model(photos, index_dir, tiny_openclip, tiny_openclip_b):
    folder = os.path.dirname(photos["cat.png"])
    report = index_folder(folder, [tiny_openclip, tiny_openclip_b], index_dir)
    assert report.new == len(photos) == 7
    assert report.embedded == {tiny_openclip: 7, tiny_openclip_b: 7}
    for spec in (tiny_openclip, tiny_openclip_b):
        in_faiss, in_sqlite = faiss_ids(index_dir, spec)
        assert in_faiss == in_sqlite and len(in_faiss) == 7
        assert paths_found(index_dir, spec) == set(photos)


def test_second_run_embeds_nothing(photos, index_dir, tiny_openclip):
    folder = os.path.dirname(photos["cat.png"])
    index_folder(folder, [tiny_openclip], index_dir)
    again = index_folder(folder, [tiny_openclip], index_dir)
    assert again.unchanged == 7
    assert again.embedded == {tiny_openclip: 0}


def test_indexing_at_another_precision_says_the_index_was_built_at_its_own(photos, index_dir, tiny_openclip):
    folder = os.path.dirname(photos["cat.png"])
    assert index_folder(folder, [tiny_openclip], index_dir, precision="fp32").notes == []
    Image.new("RGB", (40, 30), "orange").save(os.path.join(folder, "new.png"))
    report = index_folder(folder, [tiny_openclip], index_dir, precision="int8")
    assert report.embedded == {tiny_openclip: 1}
    assert len(report.notes) == 1 and "built at fp32; images embedded now are int8" in report.notes[0]
    assert index_folder(folder, [tiny_openclip], index_dir, precision="fp32").notes == []


def test_modify_rename_copy_delete(photos, index_dir, tiny_openclip, tiny_openclip_b):
    folder = os.path.dirname(photos["cat.png"])
    models = [tiny_openclip, tiny_openclip_b]
    index_folder(folder, models, index_dir)
    store = Store(index_dir)
    cat_id = store.image_id(photos["cat.png"])
    store.close()

    Image.new("RGB", (64, 48), (200, 10, 10)).save(photos["coffee.png"])  # modified in place
    os.rename(photos["cat.png"], os.path.join(folder, "kitty.png"))  # renamed
    shutil.copy(photos["rocket.png"], os.path.join(folder, "rocket-copy.png"))  # copied
    os.remove(photos["coins.png"])  # deleted

    report = index_folder(folder, models, index_dir)
    assert (report.changed, report.renamed, report.copied, report.deleted, report.new) == (1, 1, 1, 1, 0)
    # Only the modified file is embedded again, once per model; rename and copy re-use vectors.
    assert report.embedded == {tiny_openclip: 1, tiny_openclip_b: 1}

    store = Store(index_dir)
    assert store.image_id(os.path.join(folder, "kitty.png")) == cat_id  # a rename keeps the row
    store.close()
    expected = set(photos) - {"cat.png", "coins.png"} | {"kitty.png", "rocket-copy.png"}
    for spec in models:
        assert paths_found(index_dir, spec) == expected
        in_faiss, in_sqlite = faiss_ids(index_dir, spec)
        assert in_faiss == in_sqlite and len(in_faiss) == len(expected)


def test_modified_file_gets_its_new_vector(photos, index_dir, tiny_openclip):
    folder = os.path.dirname(photos["cat.png"])
    index_folder(folder, [tiny_openclip], index_dir)
    shutil.copy(photos["rocket.png"], photos["coffee.png"])  # coffee.png now holds the rocket
    index_folder(folder, [tiny_openclip], index_dir)
    searcher = Searcher(tiny_openclip, index_dir)
    top = searcher.image(photos["rocket.png"], k=1).results[0]
    assert os.path.basename(top["path"]) == "coffee.png"
    assert top["score"] > 0.999
    searcher.close()


def test_adding_a_model_later_embeds_only_for_it(photos, index_dir, tiny_openclip, tiny_openclip_b):
    folder = os.path.dirname(photos["cat.png"])
    index_folder(folder, [tiny_openclip], index_dir)
    report = index_folder(folder, [tiny_openclip, tiny_openclip_b], index_dir)
    assert report.embedded == {tiny_openclip: 0, tiny_openclip_b: 7}


def test_bad_files_are_skipped_with_reasons_and_the_rest_indexed(photos, index_dir, tiny_openclip):
    folder = os.path.dirname(photos["cat.png"])
    open(os.path.join(folder, "empty.jpg"), "wb").close()
    with open(os.path.join(folder, "notes.jpg"), "w") as f:
        f.write("this is text, not a JPEG")
    report = index_folder(folder, [tiny_openclip], index_dir)
    reasons = {os.path.basename(s["path"]): s["reason"] for s in report.skipped}
    assert reasons == {"empty.jpg": "empty file", "notes.jpg": "not an image (unrecognised format)"}
    assert report.embedded == {tiny_openclip: 7}
    # Unchanged bad files are not retried.
    assert index_folder(folder, [tiny_openclip], index_dir).skipped == []


def test_search_results_are_exact_inner_product(photos, index_dir, tiny_openclip):
    folder = os.path.dirname(photos["cat.png"])
    index_folder(folder, [tiny_openclip], index_dir)
    searcher = Searcher(tiny_openclip, index_dir)
    result = searcher.text("a cup of coffee", k=7)
    paths = [photos[name] for name in sorted(photos)]
    brute = searcher.model.embed_image(paths) @ searcher.model.embed_query("a cup of coffee")
    expected = [paths[i] for i in np.argsort(-brute)]
    assert [r["path"] for r in result.results] == expected
    np.testing.assert_allclose([r["score"] for r in result.results], np.sort(brute)[::-1], rtol=1e-4, atol=1e-5)
    searcher.close()


def test_image_query_excludes_the_query_image(photos, index_dir, tiny_openclip):
    folder = os.path.dirname(photos["cat.png"])
    index_folder(folder, [tiny_openclip], index_dir)
    searcher = Searcher(tiny_openclip, index_dir)
    result = searcher.image(photos["cat.png"], k=10)
    assert photos["cat.png"] not in [r["path"] for r in result.results]
    assert len(result.results) == 6
    searcher.close()


def test_changing_the_index_type_rebuilds_from_sqlite_without_re_embedding(photos, index_dir, tiny_openclip):
    folder = os.path.dirname(photos["cat.png"])
    index_folder(folder, [tiny_openclip], index_dir)
    report = index_folder(folder, [tiny_openclip], index_dir, factory="HNSW8")
    assert report.embedded == {tiny_openclip: 0}
    store = Store(index_dir)
    row = store.model(tiny_openclip)
    index = faiss.read_index(os.path.join(index_dir, row.index_file))
    store.close()
    assert row.factory == "HNSW8"
    assert isinstance(faiss.downcast_index(index.index), faiss.IndexHNSWFlat) and index.ntotal == 7
    assert paths_found(index_dir, tiny_openclip) == set(photos)

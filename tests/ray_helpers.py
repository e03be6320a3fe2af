"""What the Ray engine's tests share: a folder of real images, Ray settings for a 2-core
machine, and a snapshot of an index dir to compare two runs by."""

import os
import sqlite3

import numpy as np
from PIL import Image, ImageOps

from imgsearch.check import check_index
from imgsearch.samples import write_samples
from imgsearch.store import DB_NAME, Store
from imgsearch.vectors import VectorIndex, current_type, index_path

# Token auth is on by default in recent Ray; these tests start their own cluster on loopback.
RAY_ENV = {"RAY_AUTH_MODE": "disabled"}
OBJECT_STORE_BYTES = 200 * 2**20
SHARD_SIZE = 4
BATCH_SIZE = 4
IMAGE_COLUMNS = "id, path, status, reason, hash, width, height, taken_at, camera"


def image_folder(folder: str, variants: int = 3) -> str:
    """The 15 sample photos, `variants` small rotated crops of each, a file that is not an
    image and an empty one."""
    photos = write_samples(folder)
    for name, path in photos.items():
        with Image.open(path) as source:
            image = source.convert("RGB")
        for v in range(variants):
            crop = image.crop((v * 7, v * 5, image.width - v * 3, image.height - v * 9))
            crop = ImageOps.exif_transpose(crop).rotate(90 * (v + 1), expand=True)
            crop.thumbnail((96, 96))
            crop.save(os.path.join(folder, f"{os.path.splitext(name)[0]}-{v}.{'jpg' if v % 2 else 'png'}"))
    with open(os.path.join(folder, "not-an-image.jpg"), "wb") as f:
        f.write(b"plain text, not a JPEG")
    open(os.path.join(folder, "empty.png"), "wb").close()
    return folder


def snapshot(index_dir: str, specs: list[str]) -> dict:
    """Image rows, and per model its ids and vectors in SQLite and the ids its FAISS file holds."""
    store = Store(index_dir)
    try:
        images = [tuple(r) for r in store.db.execute(f"select {IMAGE_COLUMNS} from images order by id")]
        models = {}
        for spec in specs:
            row = store.model(spec)
            ids, vectors = store.embeddings_since(row.id, row.dim, -1)
            faiss_ids = VectorIndex.read(index_path(store, row), current_type(row)).ids()
            models[spec] = {"ids": ids.tolist(), "vectors": np.array(vectors), "faiss_ids": sorted(faiss_ids.tolist()),
                            "faiss_count": len(faiss_ids)}
    finally:
        store.close()
    return {"images": images, "models": models}


def assert_same_index(got: dict, want: dict, min_cosine: float = 0.9999) -> None:
    """Same image rows, same ids per model, each vector within min_cosine of the other's, and
    FAISS files holding every id exactly once (no lost, duplicated or orphaned vectors)."""
    assert got["images"] == want["images"]
    assert got["models"].keys() == want["models"].keys()
    for spec, mine in got["models"].items():
        theirs = want["models"][spec]
        assert mine["ids"] == theirs["ids"] and mine["ids"], spec
        cosines = np.sum(mine["vectors"] * theirs["vectors"], axis=1)
        assert cosines.min() >= min_cosine, (spec, float(cosines.min()))
        assert mine["faiss_ids"] == mine["ids"] and mine["faiss_count"] == len(mine["ids"])


def assert_index_checks_out(index_dir: str) -> None:
    report = check_index(index_dir)
    assert report.ok, report.problems()
    assert report.pending == 0


def committed_vectors(index_dir: str) -> int:
    """Vectors committed so far, read as another process would (read-only, beside a writer)."""
    path = os.path.join(index_dir, DB_NAME)
    if not os.path.exists(path):
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("select count(*) from embeddings").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        conn.close()

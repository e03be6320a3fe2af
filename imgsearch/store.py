"""Stage 4: the SQLite metadata database, the truth from which every FAISS index can be rebuilt.

One database per index dir (`imgsearch.db`), browsable with Datasette as is:
  images      one row per file: path, size, mtime, content hash, size in pixels, EXIF facts,
              status ("pending" | "ok" | "skipped") and the skip reason
  models      one row per model spec: family, dimension, preprocessing, library versions,
              FAISS index type, and generations (see below)
  embeddings  one vector per (model, image); the FAISS id of a vector is its image id

Generations make FAISS files cheap to trust: every committed change to a model's embeddings
bumps models.generation and stamps the rows it wrote. A FAISS file saved at generation G is
brought up to date by re-adding rows stamped after G and dropping ids no longer present.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import sqlite_utils

from .errors import IndexCorrupt

DB_NAME = "imgsearch.db"
PAGE_SIZE = 16384
SCHEMA_VERSION = 5


def _migration_1(db: sqlite_utils.Database) -> None:
    db["images"].create(
        {
            "id": int,
            "path": str,
            "path_raw": bytes,  # the path's bytes, only when they are not valid UTF-8
            "size": int,
            "mtime_ns": int,
            "hash": str,
            "width": int,
            "height": int,
            "taken_at": str,
            "camera": str,
            "status": str,
            "reason": str,
            "updated_at": float,
        },
        pk="id",
        not_null={"path", "status"},
    )
    db["images"].create_index(["path"], unique=True)
    db["images"].create_index(["hash"])
    db["models"].create(
        {
            "id": int,
            "spec": str,
            "family": str,
            "dim": int,
            "precision": str,
            "preprocess": str,  # JSON
            "versions": str,  # JSON
            "factory": str,  # FAISS index_factory string
            "index_file": str,
            "generation": int,
            "faiss_generation": int,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null={"spec"},
        defaults={"generation": 0, "faiss_generation": -1},
    )
    db["models"].create_index(["spec"], unique=True)
    db["embeddings"].create(
        {"model_id": int, "image_id": int, "gen": int, "vector": bytes},
        pk=("model_id", "image_id"),
        foreign_keys=[("model_id", "models", "id"), ("image_id", "images", "id")],
    )
    db["embeddings"].create_index(["model_id", "gen"])
    db["embeddings"].create_index(["image_id"])


# Numbered migrations: MIGRATIONS[i] takes the schema from version i to i + 1.
def _migration_2(db: sqlite_utils.Database) -> None:
    # The concrete type of each saved FAISS file: with factory "auto" it changes as a collection grows.
    db["models"].add_column("index_type", str)


def _migration_3(db: sqlite_utils.Database) -> None:
    # Judging on the user's own photos: queries, and relevance judgments of pooled results.
    # No foreign key to images: a judgment outlives its photo (kept out of scores, not lost).
    db["queries"].create({"id": int, "text": str, "source": str, "created_at": float},
                         pk="id", not_null={"text"})
    db["queries"].create_index(["text"], unique=True)
    db["judgments"].create(
        {"query_id": int, "image_id": int, "judge": str, "relevant": int, "image_hash": str,
         "path": str, "judged_at": float},
        pk=("query_id", "image_id", "judge"),
        foreign_keys=[("query_id", "queries", "id")],
        not_null={"relevant", "judge"},
    )
    db["judgments"].create_index(["image_id"])


def _migration_4(db: sqlite_utils.Database) -> None:
    # What the weights were when the vectors were made: a checkpoint re-saved at the same path
    # must not be scored on the old vectors.
    db["models"].add_column("fingerprint", str)


def _migration_5(db: sqlite_utils.Database) -> None:
    # Perceptual hashes for `imgsearch duplicates`, by content hash: a copy, a rename or a second
    # run costs no decoding, and a changed file gets a new content hash, so no entry goes stale.
    db["perceptual_hashes"].create({"content_hash": str, "kind": str, "value": str},
                                   pk=("content_hash", "kind"), not_null={"value"})


MIGRATIONS = [_migration_1, _migration_2, _migration_3, _migration_4, _migration_5]


@dataclass
class ModelRow:
    id: int
    spec: str
    family: str
    dim: int
    precision: str
    preprocess: dict
    versions: dict
    factory: str
    index_file: str
    generation: int
    faiss_generation: int
    index_type: str | None = None  # the saved FAISS file's concrete type
    fingerprint: str | None = None  # of the weights the vectors came from (None: not recorded)


def corrupt_database(db_path: str, e: Exception) -> IndexCorrupt:
    return IndexCorrupt(
        f"index database {db_path} is unreadable ({e}); move it (with its -wal and -shm files) "
        "out of the way and run `imgsearch index` again to rebuild it from the photos"
    )


def is_corruption(e: sqlite3.DatabaseError) -> bool:
    """SQLite's "malformed" / "not a database", as opposed to a busy or locked database."""
    name = getattr(e, "sqlite_errorname", "")
    return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB" or type(e) is sqlite3.DatabaseError


@contextmanager
def reporting_corruption(db_path: str):
    """A damaged page can surface on any query, not only on open: report it as IndexCorrupt."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        if not is_corruption(e):
            raise
        raise corrupt_database(db_path, e) from None


def path_to_db(path: str) -> tuple[str, bytes | None]:
    """(printable text key, raw bytes when the name is not valid UTF-8)."""
    raw = os.fsencode(path)
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), raw


def path_from_db(text: str, raw: bytes | None) -> str:
    return os.fsdecode(raw) if raw is not None else text


class Store:
    """The metadata database of one index dir."""

    def __init__(self, index_dir: str, create: bool = True):
        self.index_dir = index_dir
        self.path = os.path.join(index_dir, DB_NAME)
        if not create and not os.path.exists(self.path):
            raise FileNotFoundError(self.path)
        os.makedirs(index_dir, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout = 30000")
            # A new file only (an existing one keeps its own): a 2 KB vector row fits once in a
            # 4 KB page, so half of each page was waste (4,145 bytes a vector at dim 512, against
            # 2,382 with 16 KB pages, and 2.6x the insert rate, measured for bench scale).
            self.db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            if self.db.journal_mode != "wal":
                self.db.enable_wal()  # readers keep searching while an indexer writes
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise corrupt_database(self.path, e) from None

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise IndexCorrupt(
                f"index database {self.path} has schema v{version}, newer than this imgsearch "
                f"(v{SCHEMA_VERSION}); upgrade imgsearch"
            )
        if version == SCHEMA_VERSION:
            return
        # IMMEDIATE: take the write lock before reading the version, so that a second process
        # opening a brand-new index waits for the first one's migration instead of repeating it.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, SCHEMA_VERSION):
                MIGRATIONS[number](self.db)  # migrations and version numbers commit together
                self.db.execute(f"PRAGMA user_version = {number + 1}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.rollback()
            raise

    def close(self) -> None:
        self.db.close()

    def atomic(self):
        return self.db.atomic()

    # -- images -----------------------------------------------------------------------------
    def images_under(self, root: str) -> dict[str, dict]:
        """Rows whose path lies under root, keyed by the path as the OS sees it."""
        prefix = path_to_db(root.rstrip(os.sep) + os.sep)[0]
        upper = prefix[:-1] + chr(ord(os.sep) + 1)
        rows = self.db.execute(
            "select id, path, path_raw, size, mtime_ns, hash, status from images "
            "where path >= ? and path < ?",
            [prefix, upper],
        ).fetchall()
        out = {}
        for id_, text, raw, size, mtime_ns, hash_, status in rows:
            out[path_from_db(text, raw)] = {
                "id": id_, "size": size, "mtime_ns": mtime_ns, "hash": hash_, "status": status
            }
        return out

    def add_image(self, path: str, **fields) -> int:
        text, raw = path_to_db(path)
        row = {"path": text, "path_raw": raw, "updated_at": time.time(), **fields}
        return self.db["images"].insert(row).last_pk

    def update_image(self, image_id: int, **fields) -> None:
        self.db["images"].update(image_id, {**fields, "updated_at": time.time()})

    def move_image(self, image_id: int, new_path: str, **fields) -> None:
        text, raw = path_to_db(new_path)
        self.update_image(image_id, path=text, path_raw=raw, **fields)

    def delete_images(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            self.db.execute(f"delete from embeddings where image_id in ({marks})", chunk)
            self.db.execute(f"delete from images where id in ({marks})", chunk)

    def image_by_hash(self, hash_: str, exclude: Iterable[int] = ()) -> dict | None:
        excluded = set(exclude)
        for row in self.db.query(
            "select * from images where hash = ? and status = 'ok' order by id", [hash_]
        ):
            if row["id"] not in excluded:
                return row
        return None

    def images(self, ids: Iterable[int]) -> dict[int, dict]:
        """Rows by id, with "path" as the OS sees it."""
        ids = [int(i) for i in ids]
        out: dict[int, dict] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"select * from images where id in ({marks})", chunk):
                row["path"] = path_from_db(row["path"], row.pop("path_raw"))
                out[row["id"]] = row
        return out

    def image_ids(self, status: str = "ok") -> list[int]:
        return [r[0] for r in self.db.execute("select id from images where status = ? order by id", [status])]

    def image_id(self, path: str) -> int | None:
        row = self.db.execute("select id from images where path = ?", [path_to_db(path)[0]]).fetchone()
        return row[0] if row else None

    def work_for(self, model_ids: list[int], root: str | None = None) -> list[tuple[int, str, list[int]]]:
        """(image id, path, models lacking a vector) for images still to embed, in path order."""
        where, params = "", []
        if root is not None:
            prefix = path_to_db(root.rstrip(os.sep) + os.sep)[0]
            where, params = "and path >= ? and path < ?", [prefix, prefix[:-1] + chr(ord(os.sep) + 1)]
        rows = self.db.execute(
            f"select id, path, path_raw, status from images where status in ('ok', 'pending') {where} "
            "order by path",
            params,
        ).fetchall()
        have: dict[int, set[int]] = {m: set() for m in model_ids}
        for m in model_ids:
            have[m] = {r[0] for r in self.db.execute("select image_id from embeddings where model_id = ?", [m])}
        work = []
        for id_, text, raw, status in rows:
            lacking = [m for m in model_ids if status == "pending" or id_ not in have[m]]
            if lacking:
                work.append((id_, path_from_db(text, raw), lacking))
        return work

    def skipped(self) -> list[dict]:
        rows = self.db.query("select id, path, path_raw, reason from images where status = 'skipped' order by path")
        return [{"path": path_from_db(r["path"], r["path_raw"]), "reason": r["reason"]} for r in rows]

    def counts(self) -> dict:
        return {
            status: n
            for status, n in self.db.execute("select status, count(*) from images group by status").fetchall()
        }

    # -- models -----------------------------------------------------------------------------
    def model(self, spec: str) -> ModelRow | None:
        rows = list(self.db.query("select * from models where spec = ?", [spec]))
        return _model_row(rows[0]) if rows else None

    def models(self) -> list[ModelRow]:
        return [_model_row(r) for r in self.db.query("select * from models order by id")]

    def add_model(self, spec: str, family: str, dim: int, precision: str, preprocess: dict,
                  versions: dict, factory: str, index_file: str, fingerprint: str | None = None) -> ModelRow:
        now = time.time()
        self.db["models"].insert({
            "spec": spec, "family": family, "dim": dim, "precision": precision,
            "preprocess": json.dumps(preprocess, sort_keys=True), "versions": json.dumps(versions, sort_keys=True),
            "factory": factory, "index_file": index_file, "generation": 0, "faiss_generation": -1,
            "created_at": now, "updated_at": now, "fingerprint": fingerprint,
        })
        return self.model(spec)

    def delete_model_embeddings(self, model_id: int) -> int:
        """Every vector of one model (its row stays); returns how many were deleted."""
        return self.db.execute("delete from embeddings where model_id = ?", [model_id]).rowcount

    def drop_model(self, model_id: int) -> None:
        self.db.execute("delete from embeddings where model_id = ?", [model_id])
        self.db.execute("delete from models where id = ?", [model_id])

    def update_model(self, model_id: int, **fields) -> None:
        fields = {k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in fields.items()}
        self.db["models"].update(model_id, {**fields, "updated_at": time.time()})

    def bump_generation(self, model_id: int) -> int:
        self.db.execute("update models set generation = generation + 1, updated_at = ? where id = ?",
                        [time.time(), model_id])
        return self.db.execute("select generation from models where id = ?", [model_id]).fetchone()[0]

    def set_faiss_generation(self, model_id: int, generation: int, index_type: str) -> None:
        self.db.execute("update models set faiss_generation = ?, index_type = ? where id = ?",
                        [generation, index_type, model_id])

    # -- embeddings -------------------------------------------------------------------------
    def put_embeddings(self, model_id: int, gen: int, image_ids: list[int], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.db.conn.executemany(
            "insert or replace into embeddings (model_id, image_id, gen, vector) values (?, ?, ?, ?)",
            [(model_id, int(i), gen, v.tobytes()) for i, v in zip(image_ids, vectors)],
        )

    def copy_embeddings(self, from_image: int, to_image: int, gen_for: dict[int, int]) -> list[int]:
        """Give to_image the vectors of from_image (a copy of the same bytes); returns model ids."""
        rows = self.db.execute(
            "select model_id, vector from embeddings where image_id = ?", [from_image]
        ).fetchall()
        for model_id, vector in rows:
            self.db.execute(
                "insert or replace into embeddings (model_id, image_id, gen, vector) values (?, ?, ?, ?)",
                [model_id, to_image, gen_for[model_id], vector],
            )
        return [r[0] for r in rows]

    def delete_embeddings(self, image_ids: Iterable[int], model_id: int | None = None) -> None:
        """Delete the vectors of these images: of every model, or of model_id only."""
        only = "" if model_id is None else "model_id = ? and "
        for chunk in _chunks(list(image_ids), 500):
            params = chunk if model_id is None else [model_id, *chunk]
            self.db.execute(f"delete from embeddings where {only}image_id in ({','.join('?' * len(chunk))})", params)

    def embedding(self, model_id: int, image_id: int) -> np.ndarray | None:
        row = self.db.execute("select vector from embeddings where model_id = ? and image_id = ?",
                              [model_id, image_id]).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32)

    def embedding_count(self, model_id: int) -> int:
        return self.db.execute("select count(*) from embeddings where model_id = ?", [model_id]).fetchone()[0]

    def embedding_ids(self, model_id: int) -> np.ndarray:
        rows = self.db.execute("select image_id from embeddings where model_id = ?", [model_id]).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def embeddings_since(self, model_id: int, dim: int, after_gen: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of rows written after generation after_gen (-1: all rows)."""
        cursor = self.db.execute(
            "select image_id, vector from embeddings where model_id = ? and gen > ? order by image_id",
            [model_id, after_gen],
        )
        ids, blobs = [], []
        for image_id, blob in cursor:
            ids.append(image_id)
            blobs.append(blob)
        vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), dim)
        return np.asarray(ids, dtype=np.int64), vectors

    def iter_embeddings(self, model_id: int, dim: int, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) batches in id order; rows of the wrong length (damaged) are left out."""
        last = -1
        while True:
            rows = self.db.execute(
                "select image_id, vector from embeddings where model_id = ? and image_id > ? "
                "and length(vector) = ? order by image_id limit ?", [model_id, last, dim * 4, batch]
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield (np.asarray([r[0] for r in rows], dtype=np.int64),
                   np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim))


    # -- judging (imgsearch judge) ---------------------------------------------------------
    def add_query(self, text: str, source: str) -> tuple[int, bool]:
        """(id, added): an existing query keeps its id and source."""
        row = self.db.execute("select id from queries where text = ?", [text]).fetchone()
        if row:
            return row[0], False
        return self.db["queries"].insert({"text": text, "source": source, "created_at": time.time()}).last_pk, True

    def queries(self) -> list[dict]:
        return list(self.db.query("select id, text, source, created_at from queries order by id"))

    def query_id(self, text: str) -> int | None:
        row = self.db.execute("select id from queries where text = ?", [text]).fetchone()
        return row[0] if row else None

    def put_judgment(self, query_id: int, image_id: int, judge: str, relevant: bool, image_hash: str | None,
                     path: str) -> None:
        self.db["judgments"].upsert(
            {"query_id": query_id, "image_id": image_id, "judge": judge, "relevant": int(relevant),
             "image_hash": image_hash, "path": path, "judged_at": time.time()},
            pk=("query_id", "image_id", "judge"))

    def delete_judgment(self, query_id: int, image_id: int, judge: str) -> bool:
        cursor = self.db.execute("delete from judgments where query_id = ? and image_id = ? and judge = ?",
                                 [query_id, image_id, judge])
        return cursor.rowcount > 0

    def judgments(self) -> list[dict]:
        """Every judgment with its image as it is now: status and hash None when the photo is gone."""
        rows = self.db.query(
            "select j.query_id, j.image_id, j.judge, j.relevant, j.image_hash, j.path as judged_path, "
            "j.judged_at, i.status, i.hash as current_hash, i.path, i.path_raw "
            "from judgments j left join images i on i.id = j.image_id order by j.query_id, j.judged_at")
        out = []
        for row in rows:
            raw = row.pop("path_raw")
            row["path"] = None if row["path"] is None else path_from_db(row["path"], raw)
            out.append(row)
        return out

    # -- integrity (imgsearch check) -------------------------------------------------------
    def quick_check(self) -> list[str]:
        """SQLite's own page check: ["ok"] when the file is sound."""
        return [r[0] for r in self.db.execute("PRAGMA quick_check").fetchall()]

    def orphan_embedding_ids(self, model_id: int) -> list[int]:
        """Vectors whose image is gone or skipped."""
        return [r[0] for r in self.db.execute(
            "select e.image_id from embeddings e left join images i on i.id = e.image_id "
            "where e.model_id = ? and (i.id is null or i.status = 'skipped')", [model_id])]

    def count_images_without_vector(self, model_id: int) -> int:
        return self.db.execute(
            "select count(*) from images where status = 'ok' and id not in "
            "(select image_id from embeddings where model_id = ?)", [model_id]).fetchone()[0]

    def wrong_length_embedding_ids(self, model_id: int, dim: int) -> list[int]:
        return [r[0] for r in self.db.execute(
            "select image_id from embeddings where model_id = ? and length(vector) != ?", [model_id, dim * 4])]

    # -- bulk loads (the query bench) ----------------------------------------------------
    def add_images(self, rows: Iterable[dict], batch_size: int = 10_000) -> None:
        """Insert many image rows in batches, each with "path" as the OS sees it; ids follow
        insertion order (image_ids lists them)."""
        now = time.time()

        def prepared() -> Iterator[dict]:
            for row in rows:
                text, raw = path_to_db(row["path"])
                yield {**row, "path": text, "path_raw": raw, "updated_at": now}

        self.db["images"].insert_all(prepared(), batch_size=batch_size)

    # -- shards (the Ray engine) and streamed FAISS builds --------------------------------
    def mark_decoded(self, rows: Iterable[tuple]) -> None:
        """Many images decoded at once: (id, hash, width, height, taken_at, camera) each
        becomes status ok with no reason."""
        now = time.time()
        self.db.conn.executemany(
            "update images set status = 'ok', reason = null, hash = ?, width = ?, height = ?, taken_at = ?, "
            "camera = ?, updated_at = ? where id = ?",
            [(h, w, ht, taken, camera, now, image_id) for image_id, h, w, ht, taken, camera in rows],
        )

    def embedding_count_since(self, model_id: int, after_gen: int) -> int:
        return self.db.execute("select count(*) from embeddings where model_id = ? and gen > ?",
                               [model_id, after_gen]).fetchone()[0]

    def embeddings_for(self, model_id: int, dim: int, image_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of these images that have a vector of the right length, in id order."""
        ids, blobs = [], []
        for chunk in _chunks(sorted(int(i) for i in image_ids), 500):
            rows = self.db.execute(
                f"select image_id, vector from embeddings where model_id = ? and length(vector) = ? "
                f"and image_id in ({','.join('?' * len(chunk))}) order by image_id", [model_id, dim * 4, *chunk]
            ).fetchall()
            ids += [r[0] for r in rows]
            blobs += [r[1] for r in rows]
        vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), dim)
        return np.asarray(ids, dtype=np.int64), vectors

    # -- search filters and duplicates ---------------------------------------------------
    def search_facts(self) -> list[tuple]:
        """(id, path, path_raw, camera, exif_s, file_s) of every indexed image, for search filters.

        exif_s: the EXIF capture time ("YYYY:MM:DD HH:MM:SS", the camera's wall clock) as seconds
        since 1970-01-01 read on that wall clock, None when absent or not a real date; file_s: the
        file's mtime on this machine's local wall clock, in the same units, so the two compare.
        """
        return self.db.execute(
            "select id, path, path_raw, camera, "
            "case when taken_at glob '[0-9][0-9][0-9][0-9]:[0-9][0-9]:[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*' "
            "then cast(strftime('%s', substr(taken_at, 1, 4) || '-' || substr(taken_at, 6, 2) || '-' || "
            "substr(taken_at, 9, 2) || ' ' || substr(taken_at, 12, 8)) as integer) end, "
            "cast(strftime('%s', mtime_ns / 1000000000, 'unixepoch', 'localtime') as integer) "
            "from images where status = 'ok'").fetchall()

    def image_hashes(self, status: Iterable[str] = ("ok",)) -> dict[int, str | None]:
        """Content hash of every image with one of these statuses, by id."""
        status = list(status)
        marks = ",".join("?" * len(status))
        return dict(self.db.execute(f"select id, hash from images where status in ({marks})", status).fetchall())

    def perceptual_hashes(self, kind: str, content_hashes: Iterable[str]) -> dict[str, str]:
        """Cached perceptual hashes of this kind, by content hash."""
        out: dict[str, str] = {}
        for chunk in _chunks(list(content_hashes), 500):
            out.update(self.db.execute(
                f"select content_hash, value from perceptual_hashes where kind = ? and content_hash in "
                f"({','.join('?' * len(chunk))})", [kind, *chunk]).fetchall())
        return out

    def put_perceptual_hashes(self, kind: str, values: dict[str, str]) -> None:
        self.db.conn.executemany(
            "insert or replace into perceptual_hashes (content_hash, kind, value) values (?, ?, ?)",
            [(h, kind, v) for h, v in values.items()])

    # -- sizes (bench scale) ----------------------------------------------------------------
    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file and empty it: the file's size is then the data's."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def iter_work(self, model_ids: list[int], root: str | None = None,
                  batch: int = 10_000) -> Iterator[list[tuple[int, str, str | None, list[int]]]]:
        """work_for's images, with their content hash, in batches in path order: (image id,
        path, hash, models lacking a vector). Memory stays one batch whatever the collection."""
        low, high = "", None
        if root is not None:
            low = path_to_db(root.rstrip(os.sep) + os.sep)[0]
            high = low[:-1] + chr(ord(os.sep) + 1)
        after, first = low, True
        while True:
            rows = self.db.execute(
                f"select id, path, path_raw, hash, status from images where status in ('ok', 'pending') "
                f"and path {'>=' if first else '>'} ? {'and path < ?' if high else ''} order by path limit ?",
                [after, *([high] if high else []), batch]).fetchall()
            if not rows:
                return
            first, after = False, rows[-1][1]
            have: dict[int, set[int]] = {}
            ok = [r[0] for r in rows if r[4] == "ok"]
            for chunk in _chunks(ok, 500):
                for image_id, model_id in self.db.execute(
                        f"select image_id, model_id from embeddings where image_id in ({','.join('?' * len(chunk))})",
                        chunk):
                    have.setdefault(image_id, set()).add(model_id)
            work = []
            for id_, text, raw, hash_, status in rows:
                done = have.get(id_, set()) if status == "ok" else set()
                lacking = [m for m in model_ids if m not in done]
                if lacking:
                    work.append((id_, path_from_db(text, raw), hash_, lacking))
            yield work


def _model_row(row: dict) -> ModelRow:
    return ModelRow(
        id=row["id"], spec=row["spec"], family=row["family"], dim=row["dim"], precision=row["precision"],
        preprocess=json.loads(row["preprocess"] or "{}"), versions=json.loads(row["versions"] or "{}"),
        factory=row["factory"], index_file=row["index_file"], generation=row["generation"],
        faiss_generation=row["faiss_generation"], index_type=row.get("index_type"),
        fingerprint=row.get("fingerprint"),
    )


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]

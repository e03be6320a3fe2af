"""Evaluation sets: every supported format loaded into one EvalSet of images and text queries.

Formats, told apart by `load_dataset` from the spec alone:
  *.jsonl  one record per line, relative image paths:
           captions {"image", "captions": [...]}, qrels {"query", "relevant": [...]} (optionally
           "plus": [...], "minus": [...]: a compositional query, query + plus - minus),
           pairs {"image", "positive", "negatives": [...]}
  *.json   COCO captions (images[{id, file_name}], annotations[{image_id, caption}]) or a
           Karpathy split (images[{filepath?, filename, split, sentences[{raw}]}])
  folder   tuxpaint stamps (<name>.txt caption beside <name>.png), else one sub-folder per class
  "tuxpaint"  the installed stamps, /usr/share/tuxpaint/stamps

Image paths in a file resolve against the first folder that holds the first listed image:
the file's folder, its images/ sub-folder, or the folder the standard layouts put images in
(COCO's annotations/captions_val2014.json beside val2014/, Karpathy's dataset_flickr30k.json
beside flickr30k-images/); an explicit `root` (`eval --images DIR`) overrides them all.

Every caption is its own query, as in CLIP_benchmark (5 captions of one image = 5 queries),
with runs of whitespace in it collapsed to one space. Relevance of a caption, `relevance`:
  own-image       (default, CLIP_benchmark's rule) the image it was written for
  shared-caption  every image carrying exactly the same caption text ("A flower." names six
                  tuxpaint stamps), since no model can tell those apart from the text
qrels and class folders list their relevant images themselves ("listed").
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import Any

from .errors import UsageError
from .files import IMAGE_EXTENSIONS, Unreadable, scan

TUXPAINT_STAMPS = "/usr/share/tuxpaint/stamps"
DEFAULT_TEMPLATE = "a photo of a {label}"
JSONL_EXTENSIONS = (".jsonl", ".ndjson")
# Images beside a tuxpaint caption file, in order of preference. SVGs are left out: nothing
# here renders them, and a stamp's PNG (when it has one) shows the same picture.
_STAMP_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
_MIRROR_SUFFIX = "_mirror"  # tuxpaint's mirrored duplicate of a stamp
RELEVANCE_RULES = ("own-image", "shared-caption")
DEFAULT_RELEVANCE = "own-image"
LISTED = "listed"  # the relevance of formats that name each query's relevant images


@dataclass(frozen=True)
class Query:
    text: str
    relevant: list[str]  # absolute image paths
    # A compositional query (qrels "plus"/"minus"): text + each plus - each minus (compose.py).
    plus: tuple[str, ...] = ()
    minus: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pair:
    image: str  # absolute path
    positive: str
    negatives: list[str]


@dataclass
class EvalSet:
    name: str
    format: str  # captions-jsonl, qrels-jsonl, pairs-jsonl, coco, karpathy, class-folders, tuxpaint
    root: str  # the folder image paths were resolved against
    images: list[str]  # the collection: absolute paths, unique, in file order
    queries: list[Query]
    captions_per_image: dict[str, list[str]] = field(default_factory=dict)  # when captions exist
    pairs: list[Pair] = field(default_factory=list)  # pairs-jsonl only
    lang: str = "en"  # language of the query texts
    split: str | None = None  # karpathy only; other formats have no splits
    notes: list[str] = field(default_factory=list)  # what was left out and why, for the report
    relevance: str = DEFAULT_RELEVANCE  # one of RELEVANCE_RULES, or LISTED

    def relevant_indices(self) -> list[set[int]]:
        """Per query, the indices into `images` of its relevant images (text->image)."""
        position = {path: i for i, path in enumerate(self.images)}
        return [{position[path] for path in query.relevant} for query in self.queries]

    def image_to_text_relevant(self) -> dict[int, set[int]]:
        """Per captioned image index, the indices of the queries naming it (image->text)."""
        if not self.captions_per_image:
            raise UsageError(f"{self.name}: {self.format} has no captions per image for image->text")
        relevant: dict[int, set[int]] = {
            i: set() for i, path in enumerate(self.images) if path in self.captions_per_image
        }
        for q, image_indices in enumerate(self.relevant_indices()):
            for i in image_indices:
                relevant[i].add(q)
        return relevant


def load_dataset(
    spec: str,
    split: str = "test",
    lang: str = "en",
    template: str = DEFAULT_TEMPLATE,
    root: str | None = None,
    relevance: str | None = None,
) -> EvalSet:
    """Load an evaluation set from a file, a folder or "tuxpaint", detecting its format.

    split filters Karpathy files (exact match on their split field, so "train" excludes
    "restval"); lang picks tuxpaint's `xx.utf8=` captions and is recorded for the rest;
    template makes a class folder's query; root overrides where a file's images are;
    relevance picks the rule for captions (None: own-image).
    """
    if relevance is not None and relevance not in RELEVANCE_RULES:
        raise UsageError(f"unknown relevance rule {relevance!r} (expected {' or '.join(RELEVANCE_RULES)})")
    evalset = _load(spec, split, lang, template, root, relevance or DEFAULT_RELEVANCE)
    if relevance is not None and evalset.relevance == LISTED:
        raise UsageError(f"--relevance applies to captioned datasets; {evalset.format} lists each "
                         "query's relevant images itself")
    return evalset


def _load(spec: str, split: str, lang: str, template: str, root: str | None, relevance: str) -> EvalSet:
    path = TUXPAINT_STAMPS if spec == "tuxpaint" else os.path.abspath(os.path.expanduser(spec))
    if spec == "tuxpaint" and not os.path.isdir(path):
        raise UsageError(f"tuxpaint stamps not found at {path} (apt install tuxpaint-stamps-default)")
    if not os.path.exists(path):
        raise UsageError(f"dataset not found: {spec}")
    if os.path.isdir(path):
        if root is not None:
            raise UsageError(f"an images root applies to dataset files, not to the folder {spec}")
        if _has_stamp_captions(path):
            return _load_tuxpaint(path, lang, relevance)
        return _load_class_folders(path, template, lang)
    if path.lower().endswith(JSONL_EXTENSIONS):
        return _load_jsonl(path, root, lang, relevance)
    if path.lower().endswith(".json"):
        return _load_json(path, root, split, lang, relevance)
    raise UsageError(f"unknown dataset format: {spec} (expected .jsonl, .json or a folder)")


# --- JSONL: captions, qrels, pairs ------------------------------------------------------

_JSONL_KINDS = {  # format -> (key that identifies it, required keys)
    "captions-jsonl": ("captions", ("image", "captions")),
    "qrels-jsonl": ("relevant", ("query", "relevant")),
    "pairs-jsonl": ("negatives", ("image", "positive", "negatives")),
}


def _load_jsonl(path: str, root: str | None, lang: str, relevance: str) -> EvalSet:
    records = list(_jsonl_records(path))
    if not records:
        raise UsageError(f"{path}: empty dataset")
    first_line, first = records[0]
    kind = next((k for k, (key, _) in _JSONL_KINDS.items() if key in first), None)
    if kind is None:
        raise UsageError(
            f"{path}:{first_line}: unknown record: expected image+captions, "
            "query+relevant or image+positive+negatives"
        )
    for line, record in records:
        for key in _JSONL_KINDS[kind][1]:
            if key not in record:
                raise UsageError(f"{path}:{line}: missing {key!r} (file is {kind}, from line {first_line})")
    if kind == "qrels-jsonl":
        return _qrels(path, root, records, lang)
    if kind == "pairs-jsonl":
        return _pairs(path, root, records, lang, relevance)
    return _captions_jsonl(path, root, records, lang, relevance)


def _jsonl_records(path: str) -> Iterator[tuple[int, dict]]:
    for line_number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}:{line_number}: not valid JSON: {e.msg}") from None
        if not isinstance(record, dict):
            raise UsageError(f"{path}:{line_number}: expected a JSON object")
        yield line_number, record


def _captions_jsonl(path, root, records, lang, relevance) -> EvalSet:
    where = [f"{path}:{line}" for line, _ in records]
    relative = [_string(r["image"], "image", w) for (_, r), w in zip(records, where)]
    captions = [_strings(r["captions"], "captions", w) for (_, r), w in zip(records, where)]
    image_root = _image_root(path, relative[0], where[0], root)
    images = _resolve(image_root, relative, where)
    return _from_captions(
        _name(path), "captions-jsonl", image_root, list(zip(images, captions)), where, lang, relevance
    )


def _qrels(path, root, records, lang) -> EvalSet:
    where = [f"{path}:{line}" for line, _ in records]
    texts = [_string(r["query"], "query", w) for (_, r), w in zip(records, where)]
    relevant = [_strings(r["relevant"], "relevant", w) for (_, r), w in zip(records, where)]
    empty = [f"{w} {text!r}" for w, text, rel in zip(where, texts, relevant) if not rel]
    if empty:
        raise UsageError(f"{len(empty)} queries have no relevant image (first: {empty[0]})")
    image_root = _image_root(path, relevant[0][0], where[0], root)
    resolved = [_resolve(image_root, rel, [w] * len(rel)) for rel, w in zip(relevant, where)]
    images = list(dict.fromkeys(p for paths in resolved for p in paths))
    terms = [{key: tuple(_strings(r[key], key, w)) for key in ("plus", "minus") if key in r}
             for (_, r), w in zip(records, where)]
    queries = [Query(text, list(dict.fromkeys(paths)), **extra) for text, paths, extra in zip(texts, resolved, terms)]
    return EvalSet(_name(path), "qrels-jsonl", image_root, images, queries, lang=lang, relevance=LISTED)


def _pairs(path, root, records, lang, relevance) -> EvalSet:
    where = [f"{path}:{line}" for line, _ in records]
    relative = [_string(r["image"], "image", w) for (_, r), w in zip(records, where)]
    positives = [_string(r["positive"], "positive", w) for (_, r), w in zip(records, where)]
    negatives = [_strings(r["negatives"], "negatives", w) for (_, r), w in zip(records, where)]
    for w, negs in zip(where, negatives):
        if not negs:
            raise UsageError(f"{w}: 'negatives' is empty: a pair needs at least one")
    image_root = _image_root(path, relative[0], where[0], root)
    images = _resolve(image_root, relative, where)
    pairs = [Pair(i, p, n) for i, p, n in zip(images, positives, negatives)]
    # An image may head several pairs: its positives are all its captions.
    by_image: dict[str, list[str]] = {}
    first_where: dict[str, str] = {}
    for image, positive, w in zip(images, positives, where):
        by_image.setdefault(image, []).append(positive)
        first_where.setdefault(image, w)
    records, record_where = list(by_image.items()), list(first_where.values())
    evalset = _from_captions(_name(path), "pairs-jsonl", image_root, records, record_where, lang, relevance)
    evalset.pairs = pairs
    return evalset


# --- JSON: COCO captions, Karpathy splits -----------------------------------------------


def _load_json(path: str, root: str | None, split: str, lang: str, relevance: str) -> EvalSet:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UsageError(f"{path}: unknown JSON dataset: expected an 'images' list (COCO or Karpathy)")
    not_objects = [n for n, entry in enumerate(entries) if not isinstance(entry, dict)]
    if not_objects:
        raise UsageError(f"{path}: images[{not_objects[0]}]: expected a JSON object")
    if "annotations" in data:
        return _coco(path, root, data, lang, relevance)
    if entries and "sentences" in entries[0]:
        return _karpathy(path, root, entries, split, lang, relevance)
    raise UsageError(
        f"{path}: unknown JSON dataset: images need 'sentences' (Karpathy) "
        "or a top-level 'annotations' (COCO)"
    )


def _coco(path, root, data, lang, relevance) -> EvalSet:
    entries, annotations = data["images"], data["annotations"]
    if not entries:
        raise UsageError(f"{path}: empty dataset")
    where = [f"{path}: images[{n}]" for n in range(len(entries))]
    ids, relative = [], []
    for entry, w in zip(entries, where):
        if not isinstance(entry.get("id"), (int, str)) or "file_name" not in entry:
            raise UsageError(f"{w}: needs an 'id' (number or string) and a 'file_name'")
        ids.append(entry["id"])
        relative.append(_string(entry["file_name"], "file_name", w))
    first_seen: dict[Any, int] = {}
    for n, (image_id, w) in enumerate(zip(ids, where)):
        if image_id in first_seen:
            raise UsageError(f"{w}: id {image_id!r} repeats images[{first_seen[image_id]}]")
        first_seen[image_id] = n
    captions: dict[Any, list[str]] = {image_id: [] for image_id in ids}
    if not isinstance(annotations, list):
        raise UsageError(f"{path}: 'annotations' must be a list")
    for n, annotation in enumerate(annotations):
        w = f"{path}: annotations[{n}]"
        if not isinstance(annotation, dict) or "caption" not in annotation:
            raise UsageError(f"{w}: needs an 'image_id' and a 'caption'")
        if not isinstance(annotation.get("image_id"), (int, str)):
            raise UsageError(f"{w}: needs an 'image_id' (number or string)")
        if annotation["image_id"] not in captions:
            raise UsageError(f"{w}: image_id {annotation['image_id']!r} is not in images")
        captions[annotation["image_id"]].append(_string(annotation["caption"], "caption", w))
    image_root = _image_root(path, relative[0], where[0], root)
    images = _resolve(image_root, relative, where)
    records = [(image, captions[image_id]) for image, image_id in zip(images, ids)]
    return _from_captions(_name(path), "coco", image_root, records, where, lang, relevance)


def _karpathy(path, root, entries, split, lang, relevance) -> EvalSet:
    kept = [(n, e) for n, e in enumerate(entries) if e.get("split") == split]
    if not kept:
        present = sorted({str(e.get("split")) for e in entries})
        raise UsageError(f"{path}: no images in split {split!r} (splits present: {', '.join(present)})")
    where = [f"{path}: images[{n}]" for n, _ in kept]
    relative, captions = [], []
    for (_, entry), w in zip(kept, where):
        name = _string(entry.get("filename"), "filename", w)
        subfolder = entry.get("filepath")  # dataset_coco.json has one (val2014), Flickr's none
        relative.append(os.path.join(_string(subfolder, "filepath", w), name) if subfolder else name)
        sentences = entry.get("sentences")
        if not isinstance(sentences, list) or not all(isinstance(s, dict) and "raw" in s for s in sentences):
            raise UsageError(f"{w}: 'sentences' must be a list of {{'raw': ...}}")
        captions.append([_string(s["raw"], "raw", w) for s in sentences])
    image_root = _image_root(path, relative[0], where[0], root)
    images = _resolve(image_root, relative, where)
    evalset = _from_captions(_name(path), "karpathy", image_root, list(zip(images, captions)), where, lang,
                             relevance)
    evalset.split = split
    return evalset


# --- folders: tuxpaint stamps, one sub-folder per class ---------------------------------


def _has_stamp_captions(folder: str) -> bool:
    for _, _, files in os.walk(folder):
        stamp_images = [f for f in files if f.lower().endswith(_STAMP_IMAGE_EXTENSIONS + (".svg",))]
        stems = {os.path.splitext(f)[0] for f in stamp_images}
        if any(f.endswith(".txt") and f[:-4] in stems for f in files):
            return True
    return False


def _load_tuxpaint(folder: str, lang: str, relevance: str) -> EvalSet:
    records, svg_only, no_image, no_lang = [], 0, 0, 0
    for directory, subdirs, files in os.walk(folder):
        subdirs.sort()
        present = set(files)
        for name in sorted(files):
            stem = name[:-4]
            if not name.endswith(".txt") or stem.endswith(_MIRROR_SUFFIX):
                continue
            image = next((stem + ext for ext in _STAMP_IMAGE_EXTENSIONS if stem + ext in present), None)
            if image is None:
                if stem + ".svg" in present:
                    svg_only += 1
                else:
                    no_image += 1
                continue
            caption = _stamp_caption(os.path.join(directory, name), lang)
            if caption is None:
                no_lang += 1
                continue
            records.append((os.path.join(directory, image), [caption]))
    if not records:
        raise UsageError(f"{folder}: no stamp has a caption in {lang!r}")
    notes = [f"kept {len(records)} stamps with a caption in {lang!r}"]
    if no_lang:
        notes.append(f"left out {no_lang} stamps without a caption in {lang!r}")
    if svg_only:
        notes.append(f"left out {svg_only} SVG-only stamps (no SVG renderer)")
    if no_image:
        notes.append(f"left out {no_image} caption files without an image")
    where = [path for path, _ in records]
    evalset = _from_captions("tuxpaint", "tuxpaint", folder, records, where, lang, relevance)
    evalset.notes = notes + evalset.notes
    return evalset


# `--lang all`: every language with captions for at least this share of the stamps, so that
# each language's recall rests on nearly the same queries.
ALL_LANGUAGES_SHARE = 0.9
_LANG_CODE = re.compile(r"^[a-z]{2,3}([_@-][A-Za-z0-9]+)*$")


def load_languages(spec: str, langs: list[str], **options) -> list[EvalSet]:
    """One EvalSet per language, all over the same images (the union of the languages' sets,
    in file order), so that languages compare on one collection; a language's queries are the
    captions it has. "all" (tuxpaint) stands for every language with captions for at least
    ALL_LANGUAGES_SHARE of the stamps, English first."""
    langs = list(dict.fromkeys(langs))
    for code in langs:
        if code != "all":
            check_lang(code)
    if "all" in langs:
        if spec != "tuxpaint" and not _has_stamp_captions(os.path.abspath(os.path.expanduser(spec))):
            raise UsageError("--lang all needs a dataset with translations (tuxpaint stamps)")
        folder = TUXPAINT_STAMPS if spec == "tuxpaint" else os.path.abspath(os.path.expanduser(spec))
        everyone = tuxpaint_languages(folder)
        langs = list(dict.fromkeys(c for code in langs for c in (everyone if code == "all" else [code])))
    sets = [load_dataset(spec, lang=code, **options) for code in langs]
    gallery = list(dict.fromkeys(path for evalset in sets for path in evalset.images))
    for evalset in sets:
        if len(evalset.images) < len(gallery):
            evalset.notes.append(f"searched among the {len(gallery)} images shared by every language; "
                                 f"{len(evalset.images)} have a caption in {evalset.lang!r}")
        evalset.images = gallery
    return sets


def check_lang(code: str) -> str:
    if not _LANG_CODE.match(code):
        raise UsageError(f"unknown language code {code!r} (expected a code such as en, fr, pt_BR or 'all')")
    return code


def tuxpaint_languages(folder: str, share: float = ALL_LANGUAGES_SHARE) -> list[str]:
    """Languages with captions for at least `share` of the stamps: English, then by coverage."""
    counts: dict[str, int] = {}
    stamps = 0
    for directory, _, files in os.walk(folder):
        present = set(files)
        for name in files:
            stem = name[:-4]
            # The stamps the loader keeps: a caption file with a raster image beside it.
            if (not name.endswith(".txt") or stem.endswith(_MIRROR_SUFFIX)
                    or not any(stem + ext in present for ext in _STAMP_IMAGE_EXTENSIONS)):
                continue
            stamps += 1
            for line in _read_text(os.path.join(directory, name)).splitlines()[1:]:
                code, sep, text = line.partition(".utf8=")
                if sep and text.strip() and _LANG_CODE.match(code.strip()):
                    counts[code.strip()] = counts.get(code.strip(), 0) + 1
    kept = sorted((c for c, n in counts.items() if n >= share * stamps), key=lambda c: (-counts[c], c))
    return ["en", *(c for c in kept if c != "en")]


def _stamp_caption(txt_path: str, lang: str) -> str | None:
    """English is the first line; other languages are `xx.utf8=text` lines."""
    lines = _read_text(txt_path).splitlines()
    if lang == "en":
        caption = lines[0].strip() if lines else ""
        if not caption:
            raise UsageError(f"{txt_path}:1: empty caption")
        return caption
    prefix = f"{lang}.utf8="
    return next((line[len(prefix):].strip() for line in lines if line.startswith(prefix)), None) or None


def _load_class_folders(folder: str, template: str, lang: str) -> EvalSet:
    try:
        template.format(label="x")
    except (KeyError, IndexError, ValueError):
        raise UsageError(f"bad query template {template!r}: use {{label}} for the class name") from None
    if "{label}" not in template:
        raise UsageError(f"bad query template {template!r}: it must contain {{label}}")
    with os.scandir(folder) as it:
        entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    classes = [e for e in entries if e.is_dir()]
    loose = [e.name for e in entries if e.is_file() and _is_image(e.name)]
    if not classes:
        raise UsageError(
            f"unknown dataset format: {folder} has no class sub-folders and no tuxpaint caption files"
        )
    if loose:
        raise UsageError(f"{folder}: {len(loose)} images belong to no class folder (first: {loose[0]})")
    images, queries, empty = [], [], []
    for entry in classes:
        members = [_scanned(item) for item in scan(entry.path)]
        if not members:
            empty.append(entry.name)
            continue
        label = entry.name.replace("_", " ").replace("-", " ")
        images.extend(members)
        queries.append(Query(template.format(label=label), members))
    if empty:
        raise UsageError(f"{folder}: {len(empty)} class folders hold no images (first: {empty[0]})")
    return EvalSet(os.path.basename(folder), "class-folders", folder, images, queries, lang=lang,
                   relevance=LISTED)


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _scanned(item) -> str:
    if isinstance(item, Unreadable):
        raise UsageError(f"cannot read {item.path}: {item.reason}")
    return item.path


# --- shared -----------------------------------------------------------------------------


def _from_captions(name, format, root, records, where, lang, relevance) -> EvalSet:
    """records: (absolute image path, captions) in file order; where: a location per record."""
    captions_per_image: dict[str, list[str]] = {}
    for (image, captions), w in zip(records, where):
        if image in captions_per_image:
            raise UsageError(f"{w}: image listed twice: {image}")
        captions_per_image[image] = [" ".join(c.split()) for c in captions]
    images_by_text: dict[str, list[str]] = {}
    for image, captions in captions_per_image.items():
        for text in dict.fromkeys(captions):
            images_by_text.setdefault(text, []).append(image)
    queries = [
        Query(text, list(images_by_text[text]) if relevance == "shared-caption" else [image])
        for image, captions in captions_per_image.items()
        for text in captions
    ]
    if not queries:
        raise UsageError(f"{name}: empty dataset: no captions")
    images = list(captions_per_image)
    notes = []
    uncaptioned = sum(1 for captions in captions_per_image.values() if not captions)
    if uncaptioned:
        notes.append(f"kept {uncaptioned} images without captions as distractors")
    captioned = {image: captions for image, captions in captions_per_image.items() if captions}
    return EvalSet(name, format, root, images, queries, captioned, lang=lang, notes=notes, relevance=relevance)


def _image_root(path: str, first_relative: str, first_where: str, root: str | None) -> str:
    """The folder a dataset file's image paths are relative to: the first candidate that
    holds the first listed image (an explicit root is the only candidate)."""
    if root is not None:
        root = os.path.abspath(os.path.expanduser(root))
        if not os.path.isdir(root):
            raise UsageError(f"images folder not found: {root}")
        return root
    candidates = _candidate_roots(path)
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, first_relative)):
            return candidate
    raise UsageError(
        f"{first_where}: image not found: {first_relative} (looked in {', '.join(candidates)}; "
        "name the images folder with --images DIR)"
    )


def _candidate_roots(path: str) -> list[str]:
    """The file's folder and images/ in it, and the standard layouts' image folders:
    COCO's annotations/captions_<split>.json beside <split>/ (val2014, train2017, ...);
    Karpathy's dataset_<name>.json beside <name>-images/ or <name>_images/ (Flickr30k),
    Flickr8k's Flicker8k_Dataset/; a folder named annotations/ also looks beside itself."""
    folder = os.path.dirname(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    names = ["", "images"]
    if stem.startswith("captions_"):
        names.append(stem[len("captions_"):])
    if stem.startswith("dataset_"):
        name = stem[len("dataset_"):]
        names += [f"{name}-images", f"{name}_images", name]
        if name == "flickr8k":
            names.append("Flicker8k_Dataset")  # the folder name in Flickr8k's own archive
    bases = [folder]
    if os.path.basename(folder) == "annotations":
        bases.append(os.path.dirname(folder))
    return list(dict.fromkeys(os.path.normpath(os.path.join(base, name)) for base in bases for name in names))


def _resolve(image_root: str, relative: list[str], where: list[str]) -> list[str]:
    paths = []
    for rel, w in zip(relative, where):
        path = os.path.normpath(os.path.join(image_root, rel))
        if not os.path.isfile(path):
            raise UsageError(f"{w}: image not found: {path}")
        paths.append(path)
    return paths


def _string(value, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: {key!r} must be a non-empty string")
    return value


def _strings(value, key: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise UsageError(f"{where}: {key!r} must be a list of non-empty strings")
    return value


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start})") from None


def _name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]

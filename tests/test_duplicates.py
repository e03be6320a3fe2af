"""Duplicates on real pictures: tuxpaint stamps and copies of them made here, through the real
indexer, `find_duplicates` and `imgsearch duplicates`."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgsearch.datasets import load_dataset
from imgsearch.decode import to_rgb
from imgsearch.duplicates import DEFAULT_PHASH_BITS, find_duplicates
from imgsearch.indexer import index_folder

from conftest import run_imgsearch as run

STAMPS = 40
COPIED = 5
# The symbols category is left out of the sample on purpose: its glyphs include mirror-image
# pairs (b/d, p/q, < >), which a mirror-aware method rightly calls copies of each other.
SYMBOLS = os.sep + "symbols" + os.sep


def _copies(image: Image.Image) -> dict[str, tuple[Image.Image, dict]]:
    """The copies the issue names: JPEG re-encodes at quality 60 and 90, a 50% resize, a mirror image."""
    rgb = to_rgb(image)
    return {"q60.jpg": (rgb, {"quality": 60}), "q90.jpg": (rgb, {"quality": 90}),
            "half.png": (image.resize((image.width // 2, image.height // 2), Image.LANCZOS), {}),
            "mirror.png": (ImageOps.mirror(image), {})}


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_openclip):
    """40 distinct stamps (seeded sample), copies of 5 of them, and one byte-for-byte copy of a sixth."""
    stamps = [p for p in load_dataset("tuxpaint").images if SYMBOLS not in p]
    rng = np.random.default_rng(14)
    sample = [stamps[i] for i in sorted(rng.choice(len(stamps), STAMPS, replace=False))]
    root = tmp_path_factory.mktemp("dup-library")
    origin = {}  # path in the library -> the stamp it shows
    for number, stamp in enumerate(sample):
        path = str(root / "stamps" / f"{number:02d}-{os.path.basename(stamp)}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copy(stamp, path)
        origin[path] = stamp
        if number < COPIED:
            with Image.open(stamp) as image:
                image.load()
                for suffix, (copy, options) in _copies(image).items():
                    copy_path = str(root / "copies" / f"{number:02d}-{suffix}")
                    os.makedirs(os.path.dirname(copy_path), exist_ok=True)
                    copy.save(copy_path, **options)
                    origin[copy_path] = stamp
    exact = str(root / "backup" / "same-bytes.png")
    os.makedirs(os.path.dirname(exact))
    shutil.copy(sample[COPIED], exact)
    origin[exact] = sample[COPIED]
    index_dir = str(root / "index")
    report = index_folder(str(root), [tiny_openclip], index_dir)
    assert report.skipped == []
    return {"root": str(root), "index_dir": index_dir, "origin": origin, "sample": sample, "exact": exact}


def _groups_by_path(groups):
    return [{m["path"] for m in g["images"]} for g in groups]


def test_copies_are_found_and_distinct_stamps_never_share_a_group(library):
    report = find_duplicates(library["index_dir"])
    assert report.method == "phash" and report.threshold == DEFAULT_PHASH_BITS
    assert report.images == len(library["origin"]) and report.skipped == []
    groups = _groups_by_path(report.groups)
    origin = library["origin"]
    for path, stamp in origin.items():
        if path != stamp and "copies" in path:  # every copy sits in its original's group
            original = next(p for p, s in origin.items() if s == stamp and os.sep + "stamps" + os.sep in p)
            assert any({path, original} <= g for g in groups), f"{os.path.basename(path)} not grouped with its original"
    for g in groups:  # and no group holds two different stamps
        assert len({origin[p] for p in g}) == 1, sorted(os.path.basename(p) for p in g)
    assert sum(len(g) - 1 for g in groups) == report.to_dict()["duplicates"] == COPIED * 4 + 1


def test_groups_come_largest_first_and_exact_copies_are_marked(library):
    groups = find_duplicates(library["index_dir"]).groups
    sizes = [g["size"] for g in groups]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 5
    exact = [g for g in groups if library["exact"] in {m["path"] for m in g["images"]}]
    assert len(exact) == 1 and exact[0]["exact"] and exact[0]["size"] == 2
    assert len({m["hash"] for m in exact[0]["images"]}) == 1
    near = [g for g in groups if not g["exact"]]
    assert len(near) == COPIED
    for g in near:  # within a group the largest image first: the original before its 50% copy
        areas = [m["width"] * m["height"] for m in g["images"]]
        assert areas == sorted(areas, reverse=True) and g["images"][-1]["path"].endswith("-half.png")


def test_perceptual_hashes_are_cached_by_content_hash(library, tmp_path):
    first = find_duplicates(library["index_dir"])
    # A moved-away file can no longer be decoded, but its cached hash still groups it.
    copy = next(p for p in library["origin"] if p.endswith("00-q60.jpg"))
    shutil.move(copy, tmp_path / "away.jpg")
    try:
        again = find_duplicates(library["index_dir"])
    finally:
        shutil.move(tmp_path / "away.jpg", copy)
    assert again.skipped == [] and _groups_by_path(again.groups) == _groups_by_path(first.groups)


def test_cli_json_matches_the_api(capsys, monkeypatch, library):
    code, out, err = run(capsys, monkeypatch, "duplicates", "--index-dir", library["index_dir"], "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["method"] == "phash" and data["threshold"] == DEFAULT_PHASH_BITS
    assert _groups_by_path(data["groups"]) == _groups_by_path(find_duplicates(library["index_dir"]).groups)
    assert data["duplicates"] == COPIED * 4 + 1

    code, out, _ = run(capsys, monkeypatch, "duplicates", "--index-dir", library["index_dir"])
    assert code == 0 and out.splitlines()[0].startswith("group 1: 5 near copies")
    assert f"{len(data['groups'])} groups, {data['duplicates']} duplicates among {data['images']} images" in out


def test_a_stricter_threshold_groups_no_more_images(library):
    strict = find_duplicates(library["index_dir"], threshold=0)
    loose = find_duplicates(library["index_dir"])
    assert sum(g["size"] for g in strict.groups) <= sum(g["size"] for g in loose.groups)
    assert any(g["exact"] for g in strict.groups)


def test_model_vectors_group_identical_files(capsys, monkeypatch, library, tiny_openclip):
    code, out, err = run(capsys, monkeypatch, "duplicates", "--index-dir", library["index_dir"],
                         "--model", tiny_openclip, "--threshold", "0.9999", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["method"] == "vectors" and data["model"] == tiny_openclip and data["threshold"] == 0.9999
    groups = _groups_by_path(data["groups"])
    assert any(library["exact"] in g for g in groups)


@pytest.mark.parametrize("args, message", [
    (["--threshold", "2.5"], "whole number from 0 to 32"),
    (["--threshold", "-1"], "whole number from 0 to 32"),
    (["--threshold", "33"], "whole number from 0 to 32"),
    (["--threshold", "nan"], "whole number from 0 to 32"),
    (["--model", "MODEL", "--threshold", "1.5"], "a number in (0, 1]"),
    (["--model", "MODEL", "--threshold", "0"], "a number in (0, 1]"),
    (["--model", "MODEL", "--threshold", "inf"], "a number in (0, 1]"),
    (["--model", "MODEL"], "give --threshold"),
    (["--threshold", "abc"], "'abc' is not a valid float"),
    (["--model", "bridge:lite2", "--threshold", "0.9"], "no index for"),
])
def test_bad_thresholds_and_models_are_one_line_and_exit_2(capsys, monkeypatch, library, tiny_openclip,
                                                           args, message):
    args = [tiny_openclip if a == "MODEL" else a for a in args]
    code, out, err = run(capsys, monkeypatch, "duplicates", "--index-dir", library["index_dir"], *args)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1, err


def test_no_index_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    code, out, err = run(capsys, monkeypatch, "duplicates", "--index-dir", str(tmp_path / "none"))
    assert code == 2 and "no index in" in err and len(err.strip().splitlines()) == 1

"""Each evaluation-set format, from a tiny fixture in its real format, into one EvalSet.

The text fixtures live in tests/fixtures/datasets/<format>/; the tests copy one into a tmp
dir and draw the tiny PNGs it names there.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from imgsearch.datasets import TUXPAINT_STAMPS, EvalSet, Pair, Query, load_dataset
from imgsearch.errors import UsageError

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"


def draw_pngs(root: Path, *relative: str) -> None:
    for n, rel in enumerate(relative):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (40 * n % 256, 90, 160)).save(path)


def fixture_copy(name: str, tmp_path: Path, *images: str) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    draw_pngs(target, *images)
    return target


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def texts(evalset: EvalSet) -> list[str]:
    return [q.text for q in evalset.queries]


# --- JSONL captions ---------------------------------------------------------------------


def test_captions_jsonl_gives_one_query_per_caption(tmp_path):
    root = fixture_copy("captions", tmp_path, "beach.png", "cat.png", "garden/flower.png", "empty_room.png")
    evalset = load_dataset(str(root / "captions.jsonl"))
    beach, cat, flower, empty_room = (str(root / p) for p in ["beach.png", "cat.png", "garden/flower.png", "empty_room.png"])
    assert (evalset.name, evalset.format, evalset.root, evalset.lang, evalset.split) == (
        "captions", "captions-jsonl", str(root), "en", None
    )
    assert evalset.images == [beach, cat, flower, empty_room]
    # Five captions of the beach image are five queries; whitespace inside captions collapses.
    assert texts(evalset) == [
        "A dog running on the beach.", "Sand and sea.", "A brown dog.", "Waves.", "A sunny day.",
        "A black cat.", "A cat on a sofa.",
        "A red flower.", "A sunny day.",
    ]
    assert evalset.queries[0] == Query("A dog running on the beach.", [beach])
    # CLIP_benchmark's rule by default: a caption is relevant to its own image only, even
    # when another image carries the same text.
    assert evalset.relevance == "own-image"
    assert evalset.queries[4] == Query("A sunny day.", [beach])
    assert evalset.queries[8] == Query("A sunny day.", [flower])
    assert evalset.captions_per_image[cat] == ["A black cat.", "A cat on a sofa."]
    assert empty_room not in evalset.captions_per_image
    assert evalset.notes == ["kept 1 images without captions as distractors"]


def test_captions_jsonl_relevance_as_indices_both_ways(tmp_path):
    root = fixture_copy("captions", tmp_path, "beach.png", "cat.png", "garden/flower.png", "empty_room.png")
    evalset = load_dataset(str(root / "captions.jsonl"))
    assert evalset.relevant_indices() == [{0}, {0}, {0}, {0}, {0}, {1}, {1}, {2}, {2}]
    # Image -> text: each captioned image and its own captions; the distractor has none.
    assert evalset.image_to_text_relevant() == {0: {0, 1, 2, 3, 4}, 1: {5, 6}, 2: {7, 8}}


def test_shared_caption_relevance_makes_every_image_with_the_text_relevant(tmp_path):
    root = fixture_copy("captions", tmp_path, "beach.png", "cat.png", "garden/flower.png", "empty_room.png")
    evalset = load_dataset(str(root / "captions.jsonl"), relevance="shared-caption")
    beach, flower = str(root / "beach.png"), str(root / "garden" / "flower.png")
    assert evalset.relevance == "shared-caption"
    # "A sunny day." is a caption of the beach (query 4) and of the flower (query 8).
    assert evalset.queries[4] == Query("A sunny day.", [beach, flower])
    assert evalset.queries[8] == Query("A sunny day.", [beach, flower])
    assert evalset.relevant_indices() == [{0}, {0}, {0}, {0}, {0, 2}, {1}, {1}, {2}, {0, 2}]
    assert evalset.image_to_text_relevant() == {0: {0, 1, 2, 3, 4, 8}, 1: {5, 6}, 2: {4, 7, 8}}
    # Nothing else changes: same images, same query texts in the same order.
    own = load_dataset(str(root / "captions.jsonl"))
    assert (evalset.images, texts(evalset)) == (own.images, texts(own))


def test_relevance_rule_is_checked_and_only_applies_to_captions(tmp_path):
    root = fixture_copy("captions", tmp_path, "beach.png", "cat.png", "garden/flower.png", "empty_room.png")
    with pytest.raises(UsageError, match=r"unknown relevance rule 'any' \(expected own-image or shared-caption\)$"):
        load_dataset(str(root / "captions.jsonl"), relevance="any")
    qrels = fixture_copy("qrels", tmp_path, "dog.png", "cat.png", "cars/red.png")
    assert load_dataset(str(qrels / "qrels.jsonl")).relevance == "listed"
    with pytest.raises(UsageError, match="--relevance applies to captioned datasets; qrels-jsonl lists"):
        load_dataset(str(qrels / "qrels.jsonl"), relevance="own-image")


def test_captions_jsonl_image_missing_on_disk_names_file_and_line(tmp_path):
    root = fixture_copy("captions", tmp_path, "beach.png", "cat.png", "empty_room.png")
    with pytest.raises(UsageError, match=r"^.*captions\.jsonl:4: image not found: .*garden/flower\.png$"):
        load_dataset(str(root / "captions.jsonl"))


def test_images_may_sit_in_an_images_subfolder(tmp_path):
    write(tmp_path / "set.jsonl", '{"image": "a.png", "captions": ["A cat."]}\n')
    draw_pngs(tmp_path / "images", "a.png")
    evalset = load_dataset(str(tmp_path / "set.jsonl"))
    assert evalset.root == str(tmp_path / "images")
    assert evalset.images == [str(tmp_path / "images" / "a.png")]


def test_an_explicit_root_overrides_where_images_are_looked_for(tmp_path):
    write(tmp_path / "meta" / "set.jsonl", '{"image": "a.png", "captions": ["A cat."]}\n')
    draw_pngs(tmp_path / "pictures", "a.png")
    evalset = load_dataset(str(tmp_path / "meta" / "set.jsonl"), root=str(tmp_path / "pictures"))
    assert evalset.images == [str(tmp_path / "pictures" / "a.png")]


@pytest.mark.parametrize(
    "lines, message",
    [
        ('{"image": "a.png", "captions": ["A cat."]}\n{"image": "a.png", "captions": ["Again."]}\n',
         r"set\.jsonl:2: image listed twice: .*a\.png$"),
        ('{"image": "a.png", "captions": ["A cat."]}\n{"image": "a.png"\n', r"set\.jsonl:2: not valid JSON: "),
        ('{"image": "a.png", "captions": "A cat."}\n', r"set\.jsonl:1: 'captions' must be a list of non-empty strings$"),
        ('{"image": "a.png", "captions": ["A cat."]}\n\n{"image": "a.png", "caption": "x"}\n',
         r"set\.jsonl:3: missing 'captions' \(file is captions-jsonl, from line 1\)$"),
        ('["a.png", "A cat."]\n', r"set\.jsonl:1: expected a JSON object$"),
        ('{"file": "a.png", "text": "A cat."}\n', r"set\.jsonl:1: unknown record: expected image\+captions"),
        ("\n\n", r"set\.jsonl: empty dataset$"),
        ('{"image": "a.png", "captions": []}\n', r"set: empty dataset: no captions$"),
    ],
)
def test_malformed_jsonl_gets_one_line_naming_file_and_line(tmp_path, lines, message):
    draw_pngs(tmp_path, "a.png")
    path = write(tmp_path / "set.jsonl", lines)
    with pytest.raises(UsageError, match=message) as raised:
        load_dataset(str(path))
    assert "\n" not in str(raised.value)


# --- JSONL qrels --------------------------------------------------------------------------


def test_qrels_jsonl_queries_with_several_relevant_images(tmp_path):
    root = fixture_copy("qrels", tmp_path, "dog.png", "cat.png", "cars/red.png")
    evalset = load_dataset(str(root / "qrels.jsonl"))
    dog, cat, red = (str(root / p) for p in ["dog.png", "cat.png", "cars/red.png"])
    assert evalset.format == "qrels-jsonl"
    # The collection is every image named, in first-seen order; repeats within a query collapse.
    assert evalset.images == [dog, cat, red]
    assert evalset.queries == [Query("animals", [dog, cat]), Query("a cat", [cat]), Query("a red car", [red])]
    assert evalset.relevant_indices() == [{0, 1}, {1}, {2}]
    assert evalset.captions_per_image == {}
    with pytest.raises(UsageError, match="qrels-jsonl has no captions per image"):
        evalset.image_to_text_relevant()


def test_qrels_query_without_relevant_images_is_refused_with_count_and_first(tmp_path):
    draw_pngs(tmp_path, "a.png")
    path = write(
        tmp_path / "q.jsonl",
        '{"query": "x", "relevant": ["a.png"]}\n{"query": "y", "relevant": []}\n{"query": "z", "relevant": []}\n',
    )
    with pytest.raises(UsageError, match=r"^2 queries have no relevant image \(first: .*q\.jsonl:2 'y'\)$"):
        load_dataset(str(path))


# --- JSONL pairs (the seed's benchmark) -------------------------------------------------


def test_pairs_jsonl_gives_pairs_and_positives_as_captions(tmp_path):
    root = fixture_copy("pairs", tmp_path, "dog.png", "car.png")
    evalset = load_dataset(str(root / "pairs.jsonl"))
    dog, car = str(root / "dog.png"), str(root / "car.png")
    assert evalset.format == "pairs-jsonl"
    assert evalset.pairs == [
        Pair(dog, "a dog", ["a cat", "a car"]),
        Pair(dog, "an animal", ["a vehicle"]),
        Pair(car, "a red car", ["a blue car", "a red bus", "a red bike"]),
    ]
    assert evalset.images == [dog, car]
    assert evalset.captions_per_image == {dog: ["a dog", "an animal"], car: ["a red car"]}
    assert texts(evalset) == ["a dog", "an animal", "a red car"]


def test_a_pair_without_negatives_is_refused(tmp_path):
    draw_pngs(tmp_path, "a.png")
    path = write(tmp_path / "p.jsonl", '{"image": "a.png", "positive": "a cat", "negatives": []}\n')
    with pytest.raises(UsageError, match=r"p\.jsonl:1: 'negatives' is empty"):
        load_dataset(str(path))


# --- COCO captions JSON -----------------------------------------------------------------


def test_coco_captions_json_with_images_in_an_images_subfolder(tmp_path):
    names = ["000000000139.png", "000000000285.png", "000000000632.png"]
    root = fixture_copy("coco", tmp_path, *(f"images/{n}" for n in names))
    evalset = load_dataset(str(root / "captions_tiny.json"))
    room, bear, bedroom = (str(root / "images" / n) for n in names)
    assert (evalset.name, evalset.format, evalset.root) == ("captions_tiny", "coco", str(root / "images"))
    assert evalset.images == [room, bear, bedroom]
    # Queries follow the images' order, then each image's annotations in file order.
    assert texts(evalset) == [
        "A living room with a television.", "A room with chairs and a TV.",
        "A big brown bear.", "A bear sitting in the grass.",
    ]
    assert evalset.relevant_indices() == [{0}, {0}, {1}, {1}]
    assert evalset.notes == ["kept 1 images without captions as distractors"]


def test_coco_annotation_for_an_unknown_image_is_refused(tmp_path):
    draw_pngs(tmp_path, "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 2, "caption": "x"}]}
    path = write(tmp_path / "c.json", json.dumps(data))
    with pytest.raises(UsageError, match=r"c\.json: annotations\[0\]: image_id 2 is not in images$"):
        load_dataset(str(path))


def test_coco_image_missing_on_disk_names_its_entry_where_it_looked_and_the_option(tmp_path):
    data = {"images": [{"id": 1, "file_name": "gone.png"}], "annotations": [{"image_id": 1, "caption": "x"}]}
    path = write(tmp_path / "c.json", json.dumps(data))
    with pytest.raises(UsageError) as raised:
        load_dataset(str(path))
    assert str(raised.value) == (f"{path}: images[0]: image not found: gone.png (looked in {tmp_path}, "
                                 f"{tmp_path / 'images'}; name the images folder with --images DIR)")


def test_a_later_missing_image_names_its_full_path(tmp_path):
    draw_pngs(tmp_path, "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "gone.png"}], "annotations": []}
    path = write(tmp_path / "c.json", json.dumps(data))
    with pytest.raises(UsageError, match=r"c\.json: images\[1\]: image not found: .*/gone\.png$"):
        load_dataset(str(path))


COCO_VAL = {
    "images": [{"id": 42, "file_name": "COCO_val2014_000000000042.png"},
               {"id": 73, "file_name": "COCO_val2014_000000000073.png"}],
    "annotations": [{"image_id": 42, "caption": "A dog on a couch."}, {"image_id": 73, "caption": "A motorcycle."}],
}


def test_coco_standard_layout_annotations_beside_the_image_folder(tmp_path):
    """coco/annotations/captions_val2014.json and coco/val2014/*.jpg, as COCO ships them."""
    path = write(tmp_path / "coco" / "annotations" / "captions_val2014.json", json.dumps(COCO_VAL))
    draw_pngs(tmp_path / "coco" / "val2014", "COCO_val2014_000000000042.png", "COCO_val2014_000000000073.png")
    draw_pngs(tmp_path / "coco" / "train2014", "COCO_val2014_000000000042.png")  # a decoy: wrong split
    evalset = load_dataset(str(path))
    assert evalset.root == str(tmp_path / "coco" / "val2014")
    assert evalset.images == [str(tmp_path / "coco" / "val2014" / f"COCO_val2014_0000000000{n}.png") for n in (42, 73)]
    assert texts(evalset) == ["A dog on a couch.", "A motorcycle."]


def test_karpathy_flickr30k_standard_layout_beside_its_image_folder(tmp_path):
    """flickr30k/dataset_flickr30k.json beside flickr30k/flickr30k-images/, Karpathy's split files."""
    root = fixture_copy("karpathy", tmp_path, *(f"flickr30k-images/{p}" for p in KARPATHY_IMAGES))
    path = root / "dataset_flickr30k.json"
    (root / "dataset_tiny.json").rename(path)
    evalset = load_dataset(str(path))
    assert evalset.root == str(root / "flickr30k-images")
    assert evalset.images[1] == str(root / "flickr30k-images" / "1000092795.png")


def test_karpathy_coco_filepaths_resolve_in_a_parent_of_annotations(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(FIXTURES / "karpathy" / "dataset_tiny.json", root / "annotations" / "dataset_coco.json")
    draw_pngs(root, *KARPATHY_IMAGES)
    evalset = load_dataset(str(root / "annotations" / "dataset_coco.json"))
    assert evalset.images[0] == str(root / KARPATHY_IMAGES[0])


def test_images_folder_option_overrides_every_candidate(tmp_path):
    path = write(tmp_path / "annotations" / "captions_val2014.json", json.dumps(COCO_VAL))
    draw_pngs(tmp_path / "val2014", "COCO_val2014_000000000042.png", "COCO_val2014_000000000073.png")
    draw_pngs(tmp_path / "elsewhere", "COCO_val2014_000000000042.png", "COCO_val2014_000000000073.png")
    evalset = load_dataset(str(path), root=str(tmp_path / "elsewhere"))
    assert evalset.root == str(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match=r"^images folder not found: .*/nowhere$"):
        load_dataset(str(path), root=str(tmp_path / "nowhere"))


def test_coco_repeated_image_id_names_both_entries(tmp_path):
    draw_pngs(tmp_path, "a.png", "b.png")
    data = {"images": [{"id": 7, "file_name": "a.png"}, {"id": 7, "file_name": "b.png"}], "annotations": []}
    path = write(tmp_path / "c.json", json.dumps(data))
    with pytest.raises(UsageError, match=r"c\.json: images\[1\]: id 7 repeats images\[0\]$"):
        load_dataset(str(path))


def test_invalid_json_names_its_line(tmp_path):
    path = write(tmp_path / "c.json", '{\n  "images": [\n  oops\n')
    with pytest.raises(UsageError, match=r"c\.json:3: not valid JSON"):
        load_dataset(str(path))


def test_json_that_is_neither_coco_nor_karpathy_is_an_unknown_format(tmp_path):
    path = write(tmp_path / "c.json", '{"images": [{"file": "a.png"}]}')
    with pytest.raises(UsageError, match="unknown JSON dataset"):
        load_dataset(str(path))


# --- Karpathy split JSON ----------------------------------------------------------------

KARPATHY_IMAGES = [
    "val2014/COCO_val2014_000000000042.png",
    "val2014/COCO_val2014_000000000073.png",
    "train2014/COCO_train2014_000000000009.png",
    "val2014/COCO_val2014_000000000074.png",
    "1000092795.png",
]


def test_karpathy_json_keeps_only_the_asked_split(tmp_path):
    root = fixture_copy("karpathy", tmp_path, *KARPATHY_IMAGES)
    evalset = load_dataset(str(root / "dataset_tiny.json"))
    assert (evalset.format, evalset.split) == ("karpathy", "test")
    # filepath joins filename when present (COCO), the file name alone otherwise (Flickr30k).
    assert evalset.images == [str(root / KARPATHY_IMAGES[0]), str(root / "1000092795.png")]
    assert texts(evalset) == ["A dog on a couch.", "A puppy resting.", "Two young men in a yard."]
    assert evalset.relevant_indices() == [{0}, {0}, {1}]


def test_karpathy_train_split_is_an_exact_match_and_leaves_restval_out(tmp_path):
    root = fixture_copy("karpathy", tmp_path, *KARPATHY_IMAGES)
    evalset = load_dataset(str(root / "dataset_tiny.json"), split="train")
    assert evalset.images == [str(root / KARPATHY_IMAGES[2])]


def test_karpathy_unknown_split_lists_the_splits_present(tmp_path):
    root = fixture_copy("karpathy", tmp_path, *KARPATHY_IMAGES)
    with pytest.raises(UsageError, match=r"no images in split 'dev' \(splits present: restval, test, train, val\)$"):
        load_dataset(str(root / "dataset_tiny.json"), split="dev")


def test_karpathy_only_checks_images_of_the_asked_split_on_disk(tmp_path):
    root = fixture_copy("karpathy", tmp_path, KARPATHY_IMAGES[0], KARPATHY_IMAGES[4])
    assert len(load_dataset(str(root / "dataset_tiny.json")).images) == 2


# --- one sub-folder per class -----------------------------------------------------------


def test_class_folders_give_one_templated_query_per_class(tmp_path):
    draw_pngs(tmp_path, "golden_retriever/1.png", "golden_retriever/2.png", "tabby-cat/a/1.png")
    evalset = load_dataset(str(tmp_path), template="a photo of a {label}.")
    dogs = [str(tmp_path / "golden_retriever" / n) for n in ["1.png", "2.png"]]
    cat = str(tmp_path / "tabby-cat" / "a" / "1.png")
    assert (evalset.format, evalset.name) == ("class-folders", tmp_path.name)
    assert evalset.images == dogs + [cat]
    assert evalset.queries == [
        Query("a photo of a golden retriever.", dogs),
        Query("a photo of a tabby cat.", [cat]),
    ]
    assert evalset.relevant_indices() == [{0, 1}, {2}]


def test_default_template(tmp_path):
    draw_pngs(tmp_path, "dog/1.png")
    assert texts(load_dataset(str(tmp_path))) == ["a photo of a dog"]


def test_an_empty_class_folder_is_a_query_without_relevant_images(tmp_path):
    draw_pngs(tmp_path, "dog/1.png")
    (tmp_path / "cat").mkdir()
    (tmp_path / "emu").mkdir()
    with pytest.raises(UsageError, match=r"2 class folders hold no images \(first: cat\)$"):
        load_dataset(str(tmp_path))


def test_images_outside_class_folders_are_refused(tmp_path):
    draw_pngs(tmp_path, "dog/1.png", "stray.png")
    with pytest.raises(UsageError, match=r"1 images belong to no class folder \(first: stray\.png\)$"):
        load_dataset(str(tmp_path))


def test_template_must_name_the_label(tmp_path):
    draw_pngs(tmp_path, "dog/1.png")
    with pytest.raises(UsageError, match="it must contain {label}"):
        load_dataset(str(tmp_path), template="a photo")
    with pytest.raises(UsageError, match="bad query template"):
        load_dataset(str(tmp_path), template="a photo of a {name}")


def test_a_folder_of_loose_images_is_an_unknown_format(tmp_path):
    draw_pngs(tmp_path, "1.png")
    with pytest.raises(UsageError, match="no class sub-folders and no tuxpaint caption files"):
        load_dataset(str(tmp_path))


# --- tuxpaint stamps folder (fixture) ---------------------------------------------------

TUX_IMAGES = [
    "animals/rodents/marmot.png",
    "animals/rodents/marmot_mirror.png",
    "plants/flower1.png",
    "plants/flower2.png",
]


def test_tuxpaint_fixture_in_english(tmp_path):
    root = fixture_copy("tuxpaint", tmp_path, *TUX_IMAGES)
    evalset = load_dataset(str(root))
    marmot, flower1, flower2 = (str(root / p) for p in [TUX_IMAGES[0], TUX_IMAGES[2], TUX_IMAGES[3]])
    assert (evalset.name, evalset.format, evalset.lang) == ("tuxpaint", "tuxpaint", "en")
    # The mirrored duplicate and the SVG-only star are not in the collection.
    assert evalset.images == [marmot, flower1, flower2]
    assert evalset.queries == [
        Query("A marmot.", [marmot]),
        Query("A flower.", [flower1]),
        Query("A flower.", [flower2]),
    ]
    shared = load_dataset(str(root), relevance="shared-caption")
    assert [q.relevant for q in shared.queries] == [[marmot], [flower1, flower2], [flower1, flower2]]
    assert evalset.notes == [
        "kept 3 stamps with a caption in 'en'",
        "left out 1 SVG-only stamps (no SVG renderer)",
        "left out 1 caption files without an image",
    ]


def test_tuxpaint_fixture_in_french_keeps_stamps_with_a_french_caption(tmp_path):
    root = fixture_copy("tuxpaint", tmp_path, *TUX_IMAGES)
    evalset = load_dataset(str(root), lang="fr")
    assert texts(evalset) == ["Une marmotte.", "Une fleur."]
    assert evalset.lang == "fr"
    assert evalset.notes[:2] == ["kept 2 stamps with a caption in 'fr'", "left out 1 stamps without a caption in 'fr'"]


def test_tuxpaint_language_no_stamp_has_is_refused(tmp_path):
    root = fixture_copy("tuxpaint", tmp_path, *TUX_IMAGES)
    with pytest.raises(UsageError, match=r"no stamp has a caption in 'xx'$"):
        load_dataset(str(root), lang="xx")


def test_images_root_only_applies_to_files(tmp_path):
    root = fixture_copy("tuxpaint", tmp_path, *TUX_IMAGES)
    with pytest.raises(UsageError, match="applies to dataset files"):
        load_dataset(str(root), root=str(tmp_path))


# --- the installed tuxpaint stamps ------------------------------------------------------


def test_installed_tuxpaint_stamps_in_english():
    evalset = load_dataset("tuxpaint")
    assert evalset.root == TUXPAINT_STAMPS
    assert len(evalset.images) == len(evalset.queries) == 785
    marmot = [q for q in evalset.queries if q.text == "A marmot."]
    assert [q.relevant for q in marmot] == [[os.path.join(TUXPAINT_STAMPS, "animals/mammals/rodents/marmot.png")]]
    assert not any(p.endswith(("_mirror.png", ".svg")) for p in evalset.images)
    assert evalset.notes[0] == "kept 785 stamps with a caption in 'en'"


def test_installed_tuxpaint_stamps_in_french_and_a_language_some_stamps_lack():
    french = load_dataset("tuxpaint", lang="fr")
    assert len(french.images) == 785
    marmot = os.path.join(TUXPAINT_STAMPS, "animals/mammals/rodents/marmot.png")
    assert Query("Une marmotte.", [marmot]) in french.queries
    chinese = load_dataset("tuxpaint", lang="zh_CN")
    assert chinese.notes[:2] == [
        "kept 713 stamps with a caption in 'zh_CN'",
        "left out 72 stamps without a caption in 'zh_CN'",
    ]


# --- specs that are not datasets ----------------------------------------------------------


def test_missing_dataset_and_unknown_extension(tmp_path):
    with pytest.raises(UsageError, match=r"^dataset not found: .*nope\.jsonl$"):
        load_dataset(str(tmp_path / "nope.jsonl"))
    path = write(tmp_path / "set.csv", "image,caption\n")
    with pytest.raises(UsageError, match=r"unknown dataset format: .*set\.csv \(expected \.jsonl, \.json or a folder\)$"):
        load_dataset(str(path))


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_bytes(b'{"image": "a.png", "captions": ["caf\xe9"]}\n')
    with pytest.raises(UsageError, match=r"set\.jsonl: not UTF-8 text"):
        load_dataset(str(path))

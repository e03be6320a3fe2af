"""Preprocessing in two halves: decode workers stop at uint8 pixels (no torch arithmetic, which
would start an OpenMP team per worker thread beside the forward pass's), and the model's
thread scales a whole batch to float; decoding reduces a JPEG down to the side the models need;
OpenMP threads wait passively, so that they leave shared cores to the threads they wait for."""

import os
import subprocess
import sys

import numpy as np
import open_clip
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from imgsearch.decode import DRAFT_MIN_SIDE, read_and_decode
from imgsearch.embed import decode_side
from imgsearch.indexer import index_folder
from imgsearch.models import get_model
from imgsearch.models.bridge import MEAN, STD
from imgsearch.store import Store


def test_open_clip_halves_give_open_clips_own_transform_bit_for_bit(tiny_openclip, photos):
    model = get_model(tiny_openclip)
    _, _, reference = open_clip.create_model_and_transforms(tiny_openclip.removeprefix("openclip:"))
    images = [read_and_decode(path).image for path in photos.values()]
    pixels = [model.pixels(image) for image in images]
    assert all(p.dtype == torch.uint8 and p.shape == (3, 32, 32) for p in pixels)
    scaled = model.scale_pixels(torch.stack(pixels))  # one batch, as the indexer scales it
    for image, one in zip(images, scaled):
        assert torch.equal(one, reference(image))
        assert torch.equal(model.preprocess(image), one)


def test_bridge_scales_a_batch_as_to_tensor_and_normalize_would_each_image(photos):
    model = get_model("bridge:lite0")
    images = [read_and_decode(path).image for path in photos.values()]
    pixels = [model.pixels(image) for image in images]
    assert all(p.dtype == torch.uint8 and p.shape == (3, model.input_side, model.input_side) for p in pixels)
    scaled = model.scale_pixels(torch.stack(pixels))
    for p, one in zip(pixels, scaled):
        reference = TF.normalize(TF.to_tensor(TF.to_pil_image(p)), MEAN, STD)
        assert torch.allclose(one, reference, atol=1e-6)


def test_jpegs_decode_down_to_the_side_the_most_demanding_model_needs(tiny_openclip, tmp_path):
    small, bridge = get_model(tiny_openclip), get_model("bridge:lite0")
    assert small.input_side == 32 and bridge.input_side == 224
    assert decode_side([small]) == 32 and decode_side([small, bridge]) == 224
    path = str(tmp_path / "big.jpg")
    Image.new("RGB", (3200, 2400), (200, 40, 90)).save(path, quality=90)
    sides = {side: read_and_decode(path, side).image.size for side in (32, 224, DRAFT_MIN_SIDE)}
    assert sides[32] == sides[224] == (400, 300)  # JPEG draft goes no further than 1/8
    assert sides[DRAFT_MIN_SIDE] == (800, 600)  # 1/4: the 1/8 image's 300 px is under 448
    assert read_and_decode(path, 2400).image.size == (3200, 2400)


def test_an_image_query_decodes_as_indexing_did_so_a_file_finds_its_own_vector(tiny_openclip, photos, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    for i, path in enumerate(list(photos.values())[:3]):
        with Image.open(path) as img:
            img.convert("RGB").resize((2000, 1500)).save(folder / f"{i}.jpg", quality=90)
    index_dir = str(tmp_path / "index")
    index_folder(str(folder), [tiny_openclip], index_dir)
    store = Store(index_dir, create=False)
    try:
        row = store.model(tiny_openclip)
        ids, vectors = next(store.iter_embeddings(row.id, row.dim))
        paths = [store.images(ids.tolist())[int(i)]["path"] for i in ids]
    finally:
        store.close()
    queried = get_model(tiny_openclip).embed_image(paths)
    np.testing.assert_allclose(queried, vectors, atol=1e-6)


def test_openmp_threads_wait_passively_unless_the_user_chose_otherwise():
    show = "import imgsearch.models, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "PASSIVE"
    chosen = subprocess.run([sys.executable, "-c", show], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                            capture_output=True, text=True, check=True)
    assert chosen.stdout.strip() == "ACTIVE"

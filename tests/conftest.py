"""Shared fixtures: offline settings, tiny random-initialised models, real sample photos."""

import os

# Hub look-ups fail here; offline mode makes them fail at once instead of after retries.
# Set before anything imports huggingface_hub, which reads these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Derived files (class-prompt vectors) are worth keeping between runs, but outside the checkout
# and apart from the user's own imgsearch cache.
os.environ.setdefault("IMGSEARCH_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "imgsearch-tests"))

import json  # noqa: E402
import sys  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import open_clip  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from imgsearch.cli import main  # noqa: E402
from imgsearch.samples import write_samples  # noqa: E402

TINY_OPENCLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def save_tiny_openclip(folder, seed: int = 0) -> str:
    """A random-initialised open_clip model in open_clip's local-dir layout."""
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_OPENCLIP_CFG)
    with open(os.path.join(folder, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": TINY_OPENCLIP_CFG, "preprocess_cfg": {"size": 32}}, f)
    torch.save(model.state_dict(), os.path.join(folder, "open_clip_pytorch_model.bin"))
    return str(folder)


@pytest.fixture(scope="session")
def tiny_openclip(tmp_path_factory) -> str:
    """Spec string of a tiny open_clip model saved locally."""
    return "openclip:local-dir:" + save_tiny_openclip(tmp_path_factory.mktemp("tiny-openclip-a"), seed=0)


@pytest.fixture(scope="session")
def tiny_openclip_b(tmp_path_factory) -> str:
    return "openclip:local-dir:" + save_tiny_openclip(tmp_path_factory.mktemp("tiny-openclip-b"), seed=1)


PHOTO_NAMES = ["cat.png", "astronaut.png", "coffee.png", "rocket.png", "camera.png", "coins.png", "grace_hopper.jpg"]


@pytest.fixture
def photos(tmp_path) -> dict[str, str]:
    """Seven real photos (imgsearch.samples) in a fresh folder; name -> path."""
    return write_samples(str(tmp_path / "photos"), PHOTO_NAMES)


@pytest.fixture
def index_dir(tmp_path) -> str:
    return str(tmp_path / "indexes")


@pytest.fixture(scope="module")
def offline_cache(tmp_path_factory):
    """A fresh class-prompt cache for one module (so its tests also cover computing the prompt
    vectors, and compute them once), and no hub access. A module asks for it with
    pytestmark = pytest.mark.usefixtures("offline_cache")."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGSEARCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


def run_imgsearch(capsys, monkeypatch, *args):
    """Run `imgsearch ARGS` in-process; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["imgsearch", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


# The browser tests: Debian's /usr/bin/chromium, headless; Playwright downloads nothing.
CHROMIUM = "/usr/bin/chromium"
# Without the network switches Chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def watched_tab(browser, **context_options):
    """A tab in a fresh browser context, and the list of every script and console error it logs."""
    context = browser.new_context(**context_options)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: message.type == "error" and errors.append(message.text))
    try:
        yield tab, errors
    finally:
        context.close()

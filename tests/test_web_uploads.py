"""Uploads cost bounded memory: a stated pixel limit, a decode budget, one reduced decode each.

The figures under load (8 concurrent worst-case uploads) are in `imgsearch bench upload`;
these tests check the rules that keep them bounded, through real HTTP where a client sees them.
"""

import asyncio
import io
import math
import threading
import warnings

import pytest
from PIL import Image

from imgsearch.bench.upload import png_canvas
from imgsearch.indexer import index_folder
from imgsearch.samples import write_samples
from imgsearch.web import BackgroundServer, create_app
from imgsearch.web.decoding import MIB, MemoryBudget, decode_cost, open_image, pixel_limit, reduced_rgb
from test_web_api import assert_one_line_error, get, upload

LIMIT_SIDE = math.isqrt(pixel_limit())


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, tiny_openclip):
    root = tmp_path_factory.mktemp("web-uploads")
    photos = write_samples(str(root / "photos"), ["cat.png", "coffee.png", "rocket.png", "grace_hopper.jpg"])
    index_dir = str(root / "indexes")
    index_folder(str(root / "photos"), [tiny_openclip], index_dir)
    return {"index_dir": index_dir, "photos": photos}


@pytest.fixture(scope="module")
def url(gallery):
    with BackgroundServer(create_app(gallery["index_dir"])) as server:
        yield server.url


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# -- the stated pixel limit -------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the server's, for the refused one
def test_the_stated_pixel_limit_is_the_one_pillow_enforces(url):
    info = get(url, "/api/info").json()
    assert info["max_upload_pixels"] == pixel_limit() == Image.MAX_IMAGE_PIXELS
    at_limit, over = png_canvas(LIMIT_SIDE, LIMIT_SIDE, "1"), png_canvas(LIMIT_SIDE + 1, LIMIT_SIDE, "1")
    assert LIMIT_SIDE * LIMIT_SIDE <= pixel_limit() < (LIMIT_SIDE + 1) * LIMIT_SIDE
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.open(io.BytesIO(at_limit))  # Pillow takes this canvas without a warning...
        with pytest.raises(Image.DecompressionBombWarning):
            Image.open(io.BytesIO(over))  # ...and warns from one pixel row more: the limit is the same
    page = upload(url, at_limit, k=2)
    assert page.status == 200 and len(page.json()["results"]) == 2
    message = assert_one_line_error(upload(url, over), 413)
    assert message == f"image too large: {(LIMIT_SIDE + 1) * LIMIT_SIDE:,} pixels, over the {pixel_limit():,}-pixel limit"


def test_a_canvas_costing_more_than_the_budget_is_refused_before_decoding(gallery):
    budget = 32 * MIB
    with BackgroundServer(create_app(gallery["index_dir"], decode_budget=budget)) as server:
        assert get(server.url, "/api/info").json()["decode_budget_bytes"] == budget
        small = png_canvas(1000, 750, "RGBA")  # 3 MB decoded, 9 MB converted
        assert upload(server.url, small, k=1).status == 200
        big = png_canvas(4000, 3000, "RGBA")  # 48 MB decoded: over 32 MiB
        message = assert_one_line_error(upload(server.url, big), 413)
        assert "4000x3000 PNG needs about 58 MiB" in message and "over this server's 32 MiB" in message
        # The same canvas as a one-bit PNG costs an eighth of a byte a pixel on disk but one in
        # memory: 12 MB, plus 12 MB of strips converted to RGB, fits.
        assert upload(server.url, png_canvas(4000, 3000, "1"), k=1).status == 200


@pytest.mark.parametrize("fmt, options", [("EPS", {}), ("PDF", {}), ("ICO", {}), ("TGA", {})])
def test_formats_the_indexer_does_not_take_are_not_decoded(url, fmt, options):
    data = encoded(Image.new("RGB", (64, 64), (200, 10, 10)), fmt, **options)
    assert assert_one_line_error(upload(url, data), 400) == "not an image (unrecognised format)"


# -- one decode, reduced ----------------------------------------------------------------------

def test_a_big_upload_is_decoded_reduced_and_still_finds_its_photo(url, gallery):
    cat = Image.open(gallery["photos"]["cat.png"]).convert("RGB")
    big = cat.resize((cat.width * 12, cat.height * 12), Image.Resampling.BICUBIC)  # 5412 x 3600
    page = upload(url, encoded(big, "PNG", compress_level=1), k=1).json()
    assert page["results"][0]["name"] == "cat.png" and page["results"][0]["score"] > 0.95
    reduced = reduced_rgb(open_image(encoded(big, "PNG", compress_level=1), pixel_limit(), 448)[0], 448)
    assert reduced.size == (677, 450)  # reduced 8x: the shorter side stays >= 448


def test_a_jpeg_is_decoded_in_draft_mode_at_a_fraction_of_its_cost():
    photo = Image.new("RGB", (4000, 3000), (90, 120, 200))
    baseline, _ = open_image(encoded(photo, "JPEG"), pixel_limit(), 448)
    progressive, _ = open_image(encoded(photo, "JPEG", progressive=True, subsampling="4:4:4"), pixel_limit(), 448)
    png, _ = open_image(encoded(photo, "PNG", compress_level=1), pixel_limit(), 448)
    assert decode_cost(png, 448) >= 4000 * 3000 * 4
    assert decode_cost(baseline, 448) < decode_cost(png, 448) / 3  # drafted at 1/4 scale: 1000 x 750
    assert decode_cost(progressive, 448) > 6 * 4000 * 3000  # its coefficients are kept whole: 2 bytes x 3
    assert reduced_rgb(baseline, 448).size == (1000, 750)


def test_exif_orientation_is_applied_to_the_reduced_image():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    data = encoded(Image.new("RGB", (4000, 3000), (10, 200, 10)), "JPEG", exif=exif)
    assert reduced_rgb(open_image(data, pixel_limit(), 448)[0], 448).size == (750, 1000)


@pytest.mark.parametrize("mode", ["P", "PA", "LA", "I;16", "I", "F", "CMYK", "1"])
def test_every_mode_comes_out_rgb_with_transparency_on_white(mode):
    source = Image.new("RGBA", (1800, 1200), (0, 0, 0, 0)).convert(mode) if mode in ("PA", "LA") else \
        Image.new(mode, (1800, 1200))
    fmt = "TIFF" if mode in ("I;16", "I", "F", "CMYK", "PA") else "PNG"
    image = reduced_rgb(open_image(encoded(source, fmt), pixel_limit(), 448)[0], 448)
    assert image.mode == "RGB" and image.size == (900, 600)
    if mode in ("PA", "LA"):
        assert image.getpixel((10, 10)) == (255, 255, 255)


# -- the budget itself ------------------------------------------------------------------------

def test_the_budget_makes_a_decode_wait_until_its_cost_fits():
    async def scenario():
        budget, order = MemoryBudget(100), []

        async def decode(name, cost, hold):
            await budget.acquire(cost)
            order.append(f"{name} starts")
            await hold.wait()
            budget.release(cost)
            order.append(f"{name} ends")

        first_done, second_done = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(decode("a", 60, first_done))
        second = asyncio.create_task(decode("b", 60, second_done))
        small = asyncio.create_task(decode("c", 40, second_done))
        for _ in range(5):
            await asyncio.sleep(0)
        assert order == ["a starts", "c starts"] and budget.used == 100  # b waits: 60 more would not fit
        first_done.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert order[:4] == ["a starts", "c starts", "a ends", "b starts"]
        second_done.set()
        await asyncio.gather(first, second, small)
        assert budget.used == 0

    asyncio.run(scenario())


def test_a_text_query_is_answered_while_big_uploads_wait_for_the_budget(url):
    bomb = png_canvas(LIMIT_SIDE, LIMIT_SIDE, "1")  # 11 KB, 86 MiB decoded: two fit the budget at once
    finished, first_answered = [], threading.Event()

    def send_bomb():
        finished.append(upload(url, bomb, k=1).status)
        first_answered.set()

    threads = [threading.Thread(target=send_bomb) for _ in range(6)]
    for thread in threads:
        thread.start()
    # Whichever upload is answered first (not a given thread: the one joined could be served
    # last), the others are still being decoded or queued behind the budget.
    assert first_answered.wait(600)
    reply = get(url, "/api/search", q="a cat", k=3)
    uploads_answered_by_then = len(finished)
    for thread in threads:
        thread.join(600)
    assert reply.status == 200 and len(reply.json()["results"]) == 3
    assert finished == [200] * 6
    assert uploads_answered_by_then < len(threads), "the text query waited for every upload"

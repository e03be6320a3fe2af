"""Decoding images for requests (uploads, thumbnails) in bounded memory.

A small file can describe a huge canvas: an 11 KB PNG of 9459 x 9459 one-bit pixels decodes
to 85 MiB, a 2 KB WebP of 8000 x 6000 peaked at 740 MiB. So, for every image a request decodes:

1. The header is read first (no pixels). A canvas over the pixel limit (Pillow's own,
   Image.MAX_IMAGE_PIXELS, the one the indexer applies) is refused there, and so is one whose
   decoding would need more memory than the whole decode budget (estimated from the format and
   mode: see decode_cost).
2. It is decoded once, at reduced size where the canvas is far larger than any model's input:
   JPEG in draft mode (1/2 to 1/8 scale straight from the DCT); every other format is loaded,
   then converted to RGB and box-reduced strip by strip, so no full-size copy is ever made.
3. Decodes share one memory budget: a decode waits until its estimated cost fits beside the
   ones running, and at most DECODE_THREADS run at once, on threads of their own (so a burst of
   big uploads queues instead of multiplying memory, and holds none of the request threads).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import io
import math
import re
from concurrent.futures import ThreadPoolExecutor

from PIL import ExifTags, Image, JpegImagePlugin

from ..decode import DRAFT_MIN_SIDE, MAX_ASPECT, to_rgb
from ..errors import DecodeError
from .access import Refused

MIB = 1024 * 1024
DECODE_BUDGET = 200 * MIB
DECODE_THREADS = 2
# The formats the indexer takes (files.IMAGE_EXTENSIONS); Pillow's others (EPS, PSD, ...) are
# not even tried on an upload. (MPO, a camera JPEG with extra frames, opens as JPEG.)
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM")
# Bytes a decoder holds per pixel of the mode, beyond the image itself: measured on Pillow 13
# (an 8000 x 6000 WebP peaked at 740 MiB; libtiff may keep a second buffer).
FORMAT_FACTOR = {"WEBP": 4, "TIFF": 2}
MAX_OUTPUT_PIXELS = 2048 * 2048  # a 100:1 strip is reduced too, not only a big square
STRIP_BYTES = 4 * MIB  # converted and reduced this much at a time
ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}


def pixel_limit() -> int:
    """The canvas limit, in pixels: Pillow's, as imgsearch.decode sets it for indexing too."""
    return Image.MAX_IMAGE_PIXELS


def return_big_frees_to_the_os() -> bool:
    """Have glibc give every freed block of 1 MiB or more back to the OS at once (True if done).

    By default glibc raises its mmap threshold after the first big free (up to 32 MiB), so later
    canvas blocks come from per-thread heaps that keep their pages: with two decode threads,
    eight 200 MiB decodes in turn peaked at +484 MiB of RSS, one alone at +206 MiB. A fixed threshold
    costs a page fault per page of each big allocation, which the models' tensors pay too.
    For a server process (`imgsearch serve`), not for a library import.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return False
    m_mmap_threshold = -3  # from malloc.h
    return bool(libc.mallopt(m_mmap_threshold, MIB))


class MemoryBudget:
    """Bytes reserved by decodes in flight; used only from the event loop's thread."""

    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self, n: int) -> None:
        while self.used + n > self.total:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        while self._waiters:  # every waiter checks again whether it fits now
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


class Decoder:
    """Decodes request images under one memory budget; one per app."""

    def __init__(self, budget: int = DECODE_BUDGET, threads: int = DECODE_THREADS, max_pixels: int | None = None):
        self.budget = MemoryBudget(budget)
        self.max_pixels = max_pixels or pixel_limit()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="imgsearch-decode")

    async def decode(self, data: bytes, min_side: int = DRAFT_MIN_SIDE, *, oversize_ok: bool = False) -> Image.Image:
        """An RGB, EXIF-upright image of data, reduced while its shorter side stays >= min_side.

        Refused (413) when the canvas is over the pixel limit, or would cost more than the whole
        budget, unless oversize_ok (an image the indexer already took): that one waits to run alone.
        """
        size, fmt, cost = await self._run(0, _header, data, self.max_pixels, min_side)
        if cost > self.budget.total and not oversize_ok:
            raise Refused(413, f"image too large to decode here: {size[0]}x{size[1]} {fmt} "
                               f"needs about {cost // MIB} MiB, over this server's {self.budget.total // MIB} MiB")
        return await self._run(min(cost, self.budget.total), _decode, data, self.max_pixels, min_side)

    async def _run(self, cost: int, fn, *args):
        loop = asyncio.get_running_loop()
        await self.budget.acquire(cost)
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self.budget.release(cost)
            raise
        # Released when the work ends, not when the request does: a client that hangs up does
        # not stop a decode that has started.
        def release(_):
            if not loop.is_closed():  # after shutdown there is no budget left to return to
                loop.call_soon_threadsafe(self.budget.release, cost)

        future.add_done_callback(release)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# The decoded canvas lives only inside _decode: freed before the budget it reserved is released.

def _header(data: bytes, max_pixels: int, min_side: int) -> tuple[tuple[int, int], str, int]:
    image, cost = open_image(data, max_pixels, min_side)
    return image.size, image.format, cost


def _decode(data: bytes, max_pixels: int, min_side: int) -> Image.Image:
    return reduced_rgb(open_image(data, max_pixels, min_side)[0], min_side)


def open_image(data: bytes, max_pixels: int, min_side: int) -> tuple[Image.Image, int]:
    """(the image with only its header read, the bytes decoding it will take), or refused."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    # The warning comes as an error where another thread (the indexer's decode) has turned
    # warnings into errors: over the limit either way.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise Refused(413, too_many_pixels(int(pixels.group(1)) if pixels else None, max_pixels)) from None
    except Image.UnidentifiedImageError:
        raise DecodeError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DecodeError(f"cannot decode: {_one_line(e)}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise Refused(413, too_many_pixels(width * height, max_pixels))
    if not width or not height or max(width, height) > MAX_ASPECT * min(width, height):
        raise DecodeError(f"aspect ratio over {MAX_ASPECT}:1 ({width}x{height})")
    return image, decode_cost(image, min_side)


def too_many_pixels(pixels: int | None, max_pixels: int) -> str:
    return f"image too large: {f'{pixels:,} pixels, ' if pixels else ''}over the {max_pixels:,}-pixel limit"


def decode_cost(image: Image.Image, min_side: int) -> int:
    """Peak bytes of decoding image (opened, header only) with reduced_rgb."""
    jpeg = isinstance(image, JpegImagePlugin.JpegImageFile)
    progressive = jpeg and bool(image.info.get("progressive") or image.info.get("progression"))
    return canvas_cost(image.size, image.mode, image.format, min_side, jpeg=jpeg,
                       progressive_layers=(image.layer or [(0, 1, 1, 0)]) if progressive else None)


def canvas_cost(size: tuple[int, int], mode: str, fmt: str | None, min_side: int, *, jpeg: bool = False,
                progressive_layers: list[tuple] | None = None) -> int:
    """Peak bytes of decoding a canvas: the decoded canvas (or JPEG's draft of it, plus a
    progressive JPEG's coefficient buffers: 2 bytes a coefficient, per component at its
    sampling), its conversion to RGB, and the reduced result. progressive_layers: (id, h, v, table)."""
    width, height = size
    if jpeg:
        scale = draft_scale(size, min_side)
        size = (math.ceil(width / scale), math.ceil(height / scale))
        canvas = size[0] * size[1] * 4
        if progressive_layers:
            h_max = max(layer[1] for layer in progressive_layers)
            v_max = max(layer[2] for layer in progressive_layers)
            canvas += sum(2 * width * height * layer[1] * layer[2] // (h_max * v_max) for layer in progressive_layers)
    else:
        canvas = width * height * _pixel_bytes(mode) * FORMAT_FACTOR.get(fmt, 1)
    factor = reduction(size, min_side)
    # Converting to RGB makes up to three 4-byte copies (P -> RGBA, a white background, the
    # composite) of what it converts: the whole image when it is not reduced, else one strip.
    converted = size[1] if factor == 1 else min(size[1], _strip_rows(size[0], factor))
    return canvas + 3 * 4 * size[0] * converted + 4 * math.ceil(size[0] / factor) * math.ceil(size[1] / factor)


def reduced_rgb(image: Image.Image, min_side: int) -> Image.Image:
    """Decode image (opened by open_image) to upright RGB, reduced as decode_cost assumed."""
    try:
        orientation = _orientation(image)
        if isinstance(image, JpegImagePlugin.JpegImageFile) and draft_scale(image.size, min_side) > 1:
            image.draft("RGB", _draft_request(image.size, min_side))
        image.load()
        rgb = _reduce_in_strips(image, reduction(image.size, min_side))
        if rgb is not image:
            image.close()  # the canvas goes now, not whenever the garbage collector gets to it
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DecodeError(f"cannot decode: {_one_line(e)}") from None
    method = ORIENTATION.get(orientation)
    return rgb.transpose(method) if method is not None else rgb


def draft_scale(size: tuple[int, int], min_side: int) -> int:
    """The scale Pillow's JPEG draft picks for _draft_request(size, min_side): 1, 2, 4 or 8."""
    if min(size) <= min_side:
        return 1
    request = _draft_request(size, min_side)
    fits = min(size[0] // request[0], size[1] // request[1])
    return next(s for s in (8, 4, 2, 1) if fits >= s)


def reduction(size: tuple[int, int], min_side: int) -> int:
    """The box-reduction factor: the shorter side stays >= min_side, the result <= MAX_OUTPUT_PIXELS."""
    width, height = size
    factor = max(1, min(width, height) // min_side)
    while math.ceil(width / factor) * math.ceil(height / factor) > MAX_OUTPUT_PIXELS:
        factor += 1
    return factor


def _reduce_in_strips(image: Image.Image, factor: int) -> Image.Image:
    width, height = image.size
    top = image.getextrema()[1] if image.mode.startswith("I") or image.mode == "F" else None
    if factor == 1:  # no bigger than MAX_OUTPUT_PIXELS: converted whole
        return _strip_rgb(image, top)
    rows = _strip_rows(width, factor)
    out = Image.new("RGB", (math.ceil(width / factor), math.ceil(height / factor)))
    for y in range(0, height, rows):
        strip = _strip_rgb(image.crop((0, y, width, min(y + rows, height))), top)
        out.paste(strip.reduce(factor) if factor > 1 else strip, (0, y // factor))
    return out


def _strip_rows(width: int, factor: int) -> int:
    # A multiple of the factor, so that reducing strip by strip is reducing the whole.
    return max(factor, STRIP_BYTES // (4 * width) // factor * factor)


def _strip_rgb(strip: Image.Image, top) -> Image.Image:
    if top is not None:  # 16-bit and float: one scale for the whole image, as decode.to_rgb would
        top = top or 1
        strip = strip.convert("F").point(lambda v: v * (255.0 / top) if top > 255 else v).convert("L")
    return to_rgb(strip)


def _pixel_bytes(mode: str) -> int:
    # How Pillow stores a pixel: one byte for 1, L and P, two for I;16*, four for every other mode.
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _draft_request(size: tuple[int, int], min_side: int) -> tuple[int, int]:
    scale = min_side / min(size)
    return max(1, int(size[0] * scale)), max(1, int(size[1] * scale))


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # malformed EXIF must not cost the image
        return 1


def _one_line(e: Exception) -> str:
    return (str(e) or e.__class__.__name__).splitlines()[0][:200]

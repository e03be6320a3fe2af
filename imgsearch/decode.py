"""Stage 2: bytes on disk -> an upright RGB PIL image, or a DecodeError with the reason."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

from PIL import ExifTags, Image, ImageOps

from .errors import DecodeError
from .files import content_hash

# Pillow's own bomb limit (~179 Mpx) stays in force: a bigger image is refused, not decoded.
Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 178_956_970

# JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale straight from the DCT: models see
# 224-384 px, so a 12 Mpx photo needs nowhere near full resolution.
DRAFT_MIN_SIDE = 448
MAX_ASPECT = 100  # a 20000x20 strip has no content a model can see at 224 px
# Reasons starting so are about the file system (permissions, a file that vanished), not the
# bytes: the indexer tries such files again next run instead of waiting for them to change.
READ_ERROR = "cannot read"


@dataclass
class Decoded:
    image: Image.Image | None  # RGB, EXIF-upright, alpha composited on white; None once preprocessed
    width: int  # of the original, upright
    height: int
    hash: str
    exif: dict = field(default_factory=dict)  # "taken_at", "camera" where present


def read_and_decode(path: str, min_side: int = DRAFT_MIN_SIDE) -> Decoded:
    """Read a file once: hash its bytes and decode them."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DecodeError(read_error(e)) from None
    if not data:
        raise DecodeError("empty file")
    return decode_bytes(data, min_side=min_side)


def decode_bytes(data: bytes, min_side: int = DRAFT_MIN_SIDE) -> Decoded:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
                # Checked here too: catch_warnings is process-wide, so with decode threads
                # another thread may have restored the filters before Pillow warned.
                raise Image.DecompressionBombError(f"{width}x{height}")
            exif = _exif_facts(img)
            orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            if img.format == "JPEG" and min(img.size) > min_side:
                img.draft("RGB", _draft_size(img.size, min_side))
            img.seek(0)  # animated images: the first frame
            img = ImageOps.exif_transpose(img)
            rgb = to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DecodeError("decompression bomb: image larger than Pillow's pixel limit") from None
    except Image.UnidentifiedImageError:
        raise DecodeError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DecodeError(f"cannot decode: {_one_line(e)}") from None
    if max(rgb.size) > MAX_ASPECT * min(rgb.size):
        raise DecodeError(f"aspect ratio over {MAX_ASPECT}:1 ({width}x{height})")
    return Decoded(rgb, width, height, content_hash(data), exif)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode -> RGB; transparency is composited on white (cut-out photos, stamps, icons)."""
    if img.mode.startswith("I") or img.mode == "F":
        # 16-bit and float images: scale to 8 bit rather than clip to white.
        img = img.convert("F")
        top = img.getextrema()[1] or 1
        img = img.point(lambda v: v * (255.0 / top) if top > 255 else v).convert("L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")
    img.load()
    return img


def read_error(e: OSError) -> str:
    return f"{READ_ERROR}: {e.strerror or e.__class__.__name__}"


def open_image(path: str, min_side: int = DRAFT_MIN_SIDE) -> Image.Image:
    """A query or preview image: same decoding as indexing, hash not needed by callers."""
    return read_and_decode(path, min_side).image


def _draft_size(size: tuple[int, int], min_side: int) -> tuple[int, int]:
    w, h = size
    scale = min_side / min(w, h)
    return (max(1, int(w * scale)), max(1, int(h * scale)))


def _exif_facts(img: Image.Image) -> dict:
    try:
        exif = img.getexif()
        ifd = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception:  # malformed EXIF must not cost the image
        return {}
    facts = {}
    taken = ifd.get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)
    if taken:
        facts["taken_at"] = str(taken).strip("\x00 ")
    camera = " ".join(
        str(v).strip("\x00 ") for v in (exif.get(ExifTags.Base.Make), exif.get(ExifTags.Base.Model)) if v
    )
    if camera:
        facts["camera"] = camera
    return facts


def _one_line(e: Exception) -> str:
    text = str(e) or e.__class__.__name__
    return text.splitlines()[0][:200]

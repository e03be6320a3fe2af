"""The indexing bench's corpus, built at run time from real images (the sample photos and the
tuxpaint stamps): every CAMERA_EVERY-th file is a camera-sized JPEG (CAMERA_SIZE, upscaled,
with EXIF orientation, DateTimeOriginal, Make and Model), the rest are small PNGs. A corpus is
cached under its folder, keyed by its size by the caller, and no file is a copy of another
(the indexer embeds a copy only once).
"""

from __future__ import annotations

import io
import os

from PIL import ExifTags, Image, ImageOps, PngImagePlugin

from ..decode import to_rgb
from ..samples import write_samples

STAMPS = "/usr/share/tuxpaint/stamps"
CAMERA_EVERY = 4  # one file in four is a 12 Mpx camera JPEG, the rest small PNGs
CAMERA_SIZE = (4000, 3000)
CAMERA_QUALITY = 90
ORIENTATIONS = (1, 6, 3, 8)  # landscape, portrait (both ways), upside down
CAMERAS = (("Canon", "EOS 80D"), ("NIKON CORPORATION", "NIKON D750"), ("Apple", "iPhone 13"))


def build_corpus(folder: str, n_images: int, camera_every: int) -> tuple[str, list[str]]:
    """n_images real images under folder/images (cached: a finished corpus is re-used)."""
    images = os.path.join(folder, "images")
    names = [_file_name(i, camera_every) for i in range(n_images)]
    paths = [os.path.join(images, name) for name in names]
    done = os.path.join(folder, "complete")  # outside images/: the indexer must not see it
    if os.path.exists(done):
        return images, paths
    os.makedirs(images, exist_ok=True)
    sources = source_paths(os.path.join(os.path.dirname(folder), "sources"))
    for i, path in enumerate(paths):
        if not os.path.exists(path):
            with Image.open(sources[i % len(sources)]) as source:
                image = to_rgb(source)
            if (i // len(sources)) % 2:
                image = ImageOps.mirror(image)  # a second round of the sources looks different
            if path.endswith(".jpg"):
                data = camera_jpeg(image, i, ORIENTATIONS[(i // camera_every) % len(ORIENTATIONS)])
            else:
                data = small_png(image, i)
            with open(path + ".part", "wb") as f:
                f.write(data)
            os.replace(path + ".part", path)
    with open(done, "w") as f:
        f.write(f"{n_images}\n")
    return images, paths


def _file_name(i: int, camera_every: int) -> str:
    return f"{i:06d}.jpg" if camera_every and i % camera_every == 0 else f"{i:06d}.png"


def source_paths(folder: str) -> list[str]:
    """The sample photos (written into folder), then every tuxpaint stamp."""
    samples = write_samples(folder)
    stamps = sorted(
        os.path.join(d, f) for d, _, files in os.walk(STAMPS) for f in files if f.endswith(".png")
    )
    return list(samples.values()) + stamps


def camera_jpeg(image: Image.Image, i: int, orientation: int) -> bytes:
    """A 12 Mpx JPEG as a camera writes it (RGB; stamps were composited on white); unique
    bytes per i, since the indexer embeds a copy only once."""
    w, h = image.size
    crop_h = min(h, w * CAMERA_SIZE[1] // CAMERA_SIZE[0]) or h
    crop_w = min(w, h * CAMERA_SIZE[0] // CAMERA_SIZE[1]) or w
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    big = image.crop((left, top, left + crop_w, top + crop_h)).resize(CAMERA_SIZE, Image.Resampling.BICUBIC)
    make, model = CAMERAS[i % len(CAMERAS)]
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = make
    exif[ExifTags.Base.Model] = model
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.ImageDescription] = f"imgsearch bench image {i}"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = (
        f"2023:{1 + i % 12:02d}:{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}"
    )
    out = io.BytesIO()
    big.save(out, "JPEG", quality=CAMERA_QUALITY, exif=exif)
    return out.getvalue()


def small_png(image: Image.Image, i: int) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"imgsearch bench image {i}")  # unique bytes per i
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info)
    return out.getvalue()


def corpus_facts(paths: list[str], build_s: float) -> dict:
    cameras = sum(p.endswith(".jpg") for p in paths)
    return {
        "n_images": len(paths), "camera_jpegs": cameras, "small_pngs": len(paths) - cameras,
        "camera_size": list(CAMERA_SIZE), "bytes": sum(os.path.getsize(p) for p in paths),
        "build_s": round(build_s, 2),
    }

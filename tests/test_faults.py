"""A corpus of bad and odd files, each built here: a bad file is skipped with its reason
stored and reported, the run never stops for it, and the good photo beside it is indexed."""

import io
import json
import os
import shutil
import signal
import stat
import struct
import sys
import tempfile
import threading
import time
import traceback
import zlib

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import imgsearch.changes
import imgsearch.embed
from imgsearch.cli import main
from imgsearch.decode import MAX_ASPECT, decode_bytes
from imgsearch.indexer import index_folder
from imgsearch.models import get_model
from imgsearch.store import Store

NOBODY = 65534


def photo(size=(64, 48)) -> Image.Image:
    """A real photo (skimage's coffee cup), small so that the corpus indexes quickly."""
    return Image.fromarray(skimage.data.coffee()).resize(size)


def encoded(img: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height and holds no pixels: costs nothing to make."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def write(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def deep_folder(root, levels: int) -> str:
    path = root
    for _ in range(levels):  # one mkdir per level: os.makedirs itself recurses
        path = os.path.join(path, "d")
        os.mkdir(path)
    return path


def remove_deep_folder(top) -> None:
    """shutil.rmtree (and so pytest's clean-up of old tmp dirs) recurses once per level."""
    chain = [top]
    while os.path.isdir(os.path.join(chain[-1], "d")):
        chain.append(os.path.join(chain[-1], "d"))
    for folder in reversed(chain):
        for name in os.listdir(folder):
            if name != "d":
                os.remove(os.path.join(folder, name))
        os.rmdir(folder)


# Each builder makes its file(s) in folder and returns the path whose row is checked.
def zero_bytes(folder):
    return write(os.path.join(folder, "empty.jpg"), b"")


def truncated_jpeg(folder):
    data = encoded(photo(), "JPEG")
    return write(os.path.join(folder, "cut.jpg"), data[: len(data) // 2])


def truncated_png(folder):
    data = encoded(photo(), "PNG")
    return write(os.path.join(folder, "cut.png"), data[: len(data) // 2])


def text_named_jpg(folder):
    return write(os.path.join(folder, "notes.jpg"), b"shopping list: milk, eggs")


def png_named_jpg(folder):
    return write(os.path.join(folder, "really-a-png.jpg"), encoded(photo(), "PNG"))


def decompression_bomb(folder):
    return write(os.path.join(folder, "bomb.png"), png_header_only(20_000, 20_000))


def bomb_between_warning_and_error(folder):
    # Pillow only warns between 1x and 2x its limit; the warning must still refuse the file.
    return write(os.path.join(folder, "bomb-warn.png"), png_header_only(15_000, 15_000))


def one_pixel(folder):
    return write(os.path.join(folder, "dot.png"), encoded(Image.new("RGB", (1, 1), "red"), "PNG"))


def long_strip(folder):
    return write(os.path.join(folder, "strip.png"), encoded(Image.new("RGB", (20_000, 20), "blue"), "PNG"))


def sixteen_bit(folder):
    ramp = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21).astype(np.uint16)
    return write(os.path.join(folder, "deep-grey.png"), encoded(Image.fromarray(ramp), "PNG"))


def cmyk_jpeg(folder):
    return write(os.path.join(folder, "print.jpg"), encoded(photo().convert("CMYK"), "JPEG"))


def palette_with_transparency(folder):
    return write(os.path.join(folder, "icon.png"), encoded(photo().convert("P"), "PNG", transparency=0))


def grey_with_alpha(folder):
    return write(os.path.join(folder, "la.png"), encoded(photo().convert("LA"), "PNG"))


def rgba(folder):
    return write(os.path.join(folder, "cutout.png"), encoded(photo().convert("RGBA"), "PNG"))


def animated_gif(folder):
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "green", "blue")]
    return write(os.path.join(folder, "blink.gif"),
                 encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100))


def broken_symlink(folder):
    path = os.path.join(folder, "gone.jpg")
    os.symlink(os.path.join(folder, "no-such-file.jpg"), path)
    return path


def self_symlink(folder):
    path = os.path.join(folder, "self.jpg")
    os.symlink(path, path)  # reading it fails with "too many levels of symbolic links"
    return path


def folder_symlink_loop(folder):
    os.symlink(folder, os.path.join(folder, "loop"))  # loop/loop/loop/... is the same folder
    return os.path.join(folder, "loop", "good.png")  # must not be indexed a second time


def fifo_named_jpg(folder):
    path = os.path.join(folder, "pipe.jpg")
    os.mkfifo(path)  # opening it for reading would wait for a writer forever
    return path


def folder_named_jpg(folder):
    return write(os.path.join(folder, "album.jpg", "inside.png"), encoded(photo((40, 30)), "PNG"))


def non_utf8_name(folder):
    return write(os.path.join(folder, os.fsdecode(b"caf\xe9.png")), encoded(photo((50, 40)), "PNG"))


def non_utf8_bad_file(folder):
    return write(os.path.join(folder, os.fsdecode(b"men\xfc.jpg")), b"not a jpeg")


def unicode_and_spaces(folder):
    return write(os.path.join(folder, "Été à Paris 🌅 #1 (copy).png"), encoded(photo((48, 40)), "PNG"))


def sixty_levels_deep(folder):
    return write(os.path.join(deep_folder(folder, 60), "deep.png"), encoded(photo((40, 40)), "PNG"))


def deeper_than_the_recursion_limit(folder):
    return write(os.path.join(deep_folder(folder, sys.getrecursionlimit() + 100), "deeper.png"),
                 encoded(photo((40, 40)), "PNG"))


OK = "ok"
CORPUS = [
    (zero_bytes, "empty file"),
    (truncated_jpeg, "cannot decode: "),
    (truncated_png, "cannot decode: image file is truncated"),
    (text_named_jpg, "not an image (unrecognised format)"),
    (png_named_jpg, OK),  # Pillow reads the content, not the name
    (decompression_bomb, "decompression bomb: image larger than Pillow's pixel limit"),
    (bomb_between_warning_and_error, "decompression bomb: image larger than Pillow's pixel limit"),
    (one_pixel, OK),
    (long_strip, f"aspect ratio over {MAX_ASPECT}:1 (20000x20)"),
    (sixteen_bit, OK),
    (cmyk_jpeg, OK),
    (palette_with_transparency, OK),
    (grey_with_alpha, OK),
    (rgba, OK),
    (animated_gif, OK),
    (broken_symlink, "broken symlink"),
    (self_symlink, "broken symlink"),
    (folder_symlink_loop, None),  # None: no row at all
    (fifo_named_jpg, "not a regular file"),
    (folder_named_jpg, OK),
    (non_utf8_name, OK),
    (non_utf8_bad_file, "not an image (unrecognised format)"),
    (unicode_and_spaces, OK),
    (sixty_levels_deep, OK),
    (deeper_than_the_recursion_limit, OK),
]


def rows_by_path(index_dir) -> dict[str, dict]:
    store = Store(index_dir)
    rows = {row["path"]: row for row in store.images(r[0] for r in store.db.execute("select id from images")).values()}
    store.close()
    return rows


def vector_of(index_dir, spec, path) -> np.ndarray | None:
    store = Store(index_dir)
    model = store.model(spec)
    row = store.db.execute("select vector from embeddings where model_id = ? and image_id = ?",
                           [model.id, store.image_id(path)]).fetchone()
    store.close()
    return None if row is None else np.frombuffer(row[0], dtype=np.float32)


@pytest.fixture
def folder(tmp_path) -> str:
    """A folder with one good photo; each case adds its odd file beside it."""
    path = str(tmp_path / "photos")
    write(os.path.join(path, "good.png"), encoded(photo(), "PNG"))
    yield path
    if os.path.isdir(os.path.join(path, "d")):
        remove_deep_folder(os.path.join(path, "d"))


@pytest.mark.parametrize("make, expected", CORPUS, ids=[make.__name__ for make, _ in CORPUS])
def test_each_odd_file_is_indexed_or_skipped_with_its_reason(folder, index_dir, tiny_openclip, make, expected):
    path = make(folder)
    report = index_folder(folder, [tiny_openclip], index_dir)
    rows = rows_by_path(index_dir)

    good = os.path.join(folder, "good.png")
    assert rows[good]["status"] == "ok" and vector_of(index_dir, tiny_openclip, good) is not None
    if expected is None:
        assert path not in rows and report.skipped == []
    elif expected == OK:
        assert rows[path]["status"] == "ok" and rows[path]["reason"] is None
        assert vector_of(index_dir, tiny_openclip, path) is not None
        assert report.skipped == []
    else:
        assert rows[path]["status"] == "skipped" and rows[path]["reason"].startswith(expected)
        assert vector_of(index_dir, tiny_openclip, path) is None
        assert report.skipped == [{"path": path, "reason": rows[path]["reason"]}]
    json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")  # printable as --json


def test_the_whole_corpus_at_once_through_the_cli(folder, index_dir, tiny_openclip, capsys, monkeypatch):
    expected = {make(folder): outcome for make, outcome in CORPUS if make is not deeper_than_the_recursion_limit}
    monkeypatch.setattr(sys, "argv", ["imgsearch", "index", folder, "-m", tiny_openclip, "--index-dir", index_dir])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert code == 0

    skipped = {path: reason for path, reason in expected.items() if reason not in (OK, None)}
    indexed = [path for path, outcome in expected.items() if outcome == OK]
    rows = rows_by_path(index_dir)
    for path in skipped:
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        assert f"skipping {shown}: {rows[path]['reason']}" in err
    assert f"{len(skipped)} files skipped in all" in out
    assert f"{tiny_openclip}: {len(indexed) + 1} embedded" in out  # + good.png


def test_exif_rotated_photos_are_indexed_upright(tmp_path, index_dir, tiny_openclip):
    folder = str(tmp_path / "photos")
    upright = photo((48, 64))  # portrait, as the camera was held
    # Orientation 8: the pixels are stored turned, and a viewer turns them back with ROTATE_90.
    exif = Image.Exif()
    exif[0x0112] = 8
    png = write(os.path.join(folder, "portrait.png"), encoded(upright.transpose(Image.Transpose.ROTATE_270),
                                                             "PNG", exif=exif))
    exif[0x0112] = 6  # turned the other way: a viewer applies ROTATE_270
    jpeg = write(os.path.join(folder, "portrait.jpg"), encoded(upright.transpose(Image.Transpose.ROTATE_90),
                                                              "JPEG", exif=exif, quality=95))
    index_folder(folder, [tiny_openclip], index_dir)
    rows = rows_by_path(index_dir)
    model = get_model(tiny_openclip)

    for path in (png, jpeg):
        assert (rows[path]["width"], rows[path]["height"]) == (48, 64)
    # Lossless PNG: the vector is exactly that of the upright photo.
    np.testing.assert_allclose(vector_of(index_dir, tiny_openclip, png), model.embed_image([upright])[0], atol=1e-5)
    # JPEG: that of its own decoded pixels turned by hand, and not that of the stored pixels.
    stored = Image.open(jpeg).convert("RGB")
    turned = stored.transpose(Image.Transpose.ROTATE_270)
    np.testing.assert_allclose(vector_of(index_dir, tiny_openclip, jpeg), model.embed_image([turned])[0], atol=1e-5)
    assert not np.allclose(vector_of(index_dir, tiny_openclip, jpeg), model.embed_image([stored])[0], atol=1e-3)


def test_odd_modes_decode_to_the_picture_not_to_a_blank(tmp_path):
    ramp = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21).astype(np.uint16)
    grey = np.asarray(decode_bytes(encoded(Image.fromarray(ramp), "PNG")).image)
    assert grey.min() < 10 and grey.max() > 245  # 16 bit scaled to 8, not clipped to white
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "green")]
    gif = decode_bytes(encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])).image
    assert gif.getpixel((0, 0)) == (255, 0, 0)  # the first frame
    cutout = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert decode_bytes(encoded(cutout, "PNG")).image.getpixel((0, 0)) == (255, 255, 255)  # on white


def test_a_file_that_vanishes_while_being_indexed_is_skipped_then_swept(folder, index_dir, tiny_openclip, monkeypatch):
    vanishing = write(os.path.join(folder, "vanishing.png"), encoded(photo((50, 50)), "PNG"))
    prepare = imgsearch.embed._prepare

    def delete_then_prepare(path, models):
        if path == vanishing and os.path.exists(path):
            os.remove(path)  # after the folder scan and hashing, before the decode
        return prepare(path, models)

    monkeypatch.setattr(imgsearch.embed, "_prepare", delete_then_prepare)
    report = index_folder(folder, [tiny_openclip], index_dir)
    assert report.skipped == [{"path": vanishing, "reason": "cannot read: No such file or directory"}]
    assert rows_by_path(index_dir)[os.path.join(folder, "good.png")]["status"] == "ok"

    again = index_folder(folder, [tiny_openclip], index_dir)
    assert again.deleted == 1 and vanishing not in rows_by_path(index_dir)


@pytest.mark.parametrize("when", ["before decoding", "after decoding"])
def test_a_file_that_changes_while_being_indexed_ends_with_its_new_vector(folder, index_dir, tiny_openclip,
                                                                          monkeypatch, when):
    changing = write(os.path.join(folder, "changing.png"), encoded(photo((50, 50)), "PNG"))
    new_picture = Image.fromarray(skimage.data.rocket()).resize((60, 40))  # other bytes, other size
    prepare = imgsearch.embed._prepare

    def change_around_prepare(path, models):
        if path != changing:
            return prepare(path, models)
        if when == "before decoding":  # after the scan and the hashing saw the old bytes
            write(changing, encoded(new_picture, "PNG"))
            return prepare(path, models)
        result = prepare(path, models)
        write(changing, encoded(new_picture, "PNG"))
        return result

    with monkeypatch.context() as patch:
        patch.setattr(imgsearch.embed, "_prepare", change_around_prepare)
        index_folder(folder, [tiny_openclip], index_dir)
    again = index_folder(folder, [tiny_openclip], index_dir)  # the folder as it is now
    assert again.embedded == {tiny_openclip: 1 if when == "after decoding" else 0}
    expected = get_model(tiny_openclip).embed_image([new_picture])[0]
    np.testing.assert_allclose(vector_of(index_dir, tiny_openclip, changing), expected, atol=1e-5)
    assert rows_by_path(index_dir)[changing]["width"] == 60


def run_as_nobody(work) -> int:
    """Run work() in a forked child with the uid of nobody; its exit status.

    The tests run as root, and root reads a chmod 000 file anyway: only a process without
    that privilege meets "Permission denied". Forked, so that it needs no fresh import of
    torch; it uses one thread, as forked workers of torch must.
    """
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            torch.set_num_threads(1)
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_files_and_folders_without_read_permission(tiny_openclip):
    """An unreadable file is skipped and tried again next run; under an unreadable folder
    the indexed photos are kept, not swept."""
    get_model(tiny_openclip)  # loaded here, before the fork: the child cannot read root's files
    work_dir = tempfile.mkdtemp(prefix="imgsearch-perms-")  # tmp_path is private to root
    try:
        folder, index_dir = os.path.join(work_dir, "photos"), os.path.join(work_dir, "index")
        good = write(os.path.join(folder, "good.png"), encoded(photo(), "PNG"))
        secret = write(os.path.join(folder, "secret.png"), encoded(photo((50, 50)), "PNG"))
        private = os.path.join(folder, "private")
        inside = write(os.path.join(private, "inside.png"), encoded(photo((40, 50)), "PNG"))
        os.makedirs(index_dir)
        for path, mode in [(work_dir, 0o755), (folder, 0o755), (private, 0o755), (index_dir, 0o777),
                           (good, 0o644), (inside, 0o644), (secret, 0)]:
            os.chmod(path, mode)
        decode_bytes(encoded(photo(), "PNG"))  # Pillow's plugins imported before the fork

        def index_as_nobody():
            assert run_as_nobody(lambda: index_folder(folder, [tiny_openclip], index_dir)) == 0
            return rows_by_path(index_dir)

        rows = index_as_nobody()
        assert rows[good]["status"] == rows[inside]["status"] == "ok"
        assert (rows[secret]["status"], rows[secret]["reason"]) == ("skipped", "cannot read: Permission denied")
        inside_vector = vector_of(index_dir, tiny_openclip, inside)

        os.chmod(private, 0)
        rows = index_as_nobody()
        assert (rows[private]["status"], rows[private]["reason"]) == ("skipped", "Permission denied")
        assert rows[inside]["status"] == "ok"
        np.testing.assert_array_equal(vector_of(index_dir, tiny_openclip, inside), inside_vector)

        os.chmod(private, 0o755)
        os.chmod(secret, stat.S_IRUSR | stat.S_IWUSR)  # fixed: mtime and size are unchanged
        again = index_folder(folder, [tiny_openclip], index_dir)
        assert again.embedded == {tiny_openclip: 1}  # secret.png; inside.png was never lost
        rows = rows_by_path(index_dir)
        assert rows[secret]["status"] == "ok" and private not in rows
    finally:
        shutil.rmtree(work_dir)


def test_rows_under_a_folder_that_cannot_be_entered_are_kept(tmp_path, index_dir, tiny_openclip):
    """A symlinked folder on a drive that is not mounted now: its photos are not swept."""
    folder, drive = str(tmp_path / "photos"), str(tmp_path / "usb-drive")
    write(os.path.join(folder, "good.png"), encoded(photo(), "PNG"))
    write(os.path.join(drive, "2019", "beach.png"), encoded(photo((50, 50)), "PNG"))
    os.symlink(drive, os.path.join(folder, "archive"))
    index_folder(folder, [tiny_openclip], index_dir)
    linked = os.path.join(folder, "archive", "2019", "beach.png")
    kept_vector = vector_of(index_dir, tiny_openclip, linked)

    os.rename(drive, drive + "-unplugged")
    report = index_folder(folder, [tiny_openclip], index_dir)
    assert report.deleted == 0
    assert report.skipped == [{"path": os.path.join(folder, "archive"),
                               "reason": "broken symlink; its 1 indexed images are kept"}]
    np.testing.assert_array_equal(vector_of(index_dir, tiny_openclip, linked), kept_vector)

    os.rename(drive + "-unplugged", drive)  # plugged back in: nothing to redo
    back = index_folder(folder, [tiny_openclip], index_dir)
    assert back.embedded == {tiny_openclip: 0} and back.unchanged == 2

    # A deleted target looks the same as an unplugged drive: the rows go with the link itself.
    shutil.rmtree(drive)
    assert index_folder(folder, [tiny_openclip], index_dir).deleted == 0
    os.remove(os.path.join(folder, "archive"))
    assert index_folder(folder, [tiny_openclip], index_dir).deleted == 1


def test_interrupted_hashing_does_not_wait_for_the_rest_of_the_folder(folder, index_dir, tiny_openclip, monkeypatch):
    for n in range(40):
        write(os.path.join(folder, f"new-{n:02d}.png"), encoded(photo((20 + n, 20)), "PNG"))
    hashed = []
    hash_file = imgsearch.changes._hash_file

    def hash_then_interrupt(entry):
        hashed.append(entry.path)
        if len(hashed) == 3:
            # Ctrl-C: the kernel hands a terminal's SIGINT to a thread that does not block it, and
            # Python runs its handler in the main thread; raise_signal() here would target this
            # worker thread, where a signal mask inherited from earlier work can hold it pending.
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        time.sleep(0.02)  # a big photo on a slow disk: the main thread gets its turn
        return hash_file(entry)

    monkeypatch.setattr(imgsearch.changes, "_hash_file", hash_then_interrupt)
    report = index_folder(folder, [tiny_openclip], index_dir, workers=1)
    assert report.interrupted
    assert len(hashed) < 41

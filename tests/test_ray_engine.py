"""`imgsearch index --engine ray` on a local Ray cluster (2 CPUs, one cluster for the module):
the same index as the local engine, resumption from shard files and from a killed driver."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import ray

from imgsearch import shards
from imgsearch.changes import FolderChanges, apply_folder_changes
from imgsearch.cli import main
from imgsearch.embed import decode_side
from imgsearch.files import scan
from imgsearch.indexer import index_folder
from imgsearch.model_rows import register_model
from imgsearch.models import get_model
from imgsearch.ray_engine import run_shards
from imgsearch.ray_options import RayOptions
from imgsearch.search import Searcher
from imgsearch.shards import SHARD_DIR, plan, shard_models
from imgsearch.store import Store

from ray_helpers import (BATCH_SIZE, OBJECT_STORE_BYTES, RAY_ENV, SHARD_SIZE, assert_index_checks_out,
                         assert_same_index, committed_vectors, image_folder, snapshot)

OPTIONS = RayOptions(shard_size=SHARD_SIZE, workers=1)  # one actor per model: actor start-up dominates here


@pytest.fixture(scope="module")
def cluster():
    os.environ.update(RAY_ENV)
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                       logging_level="WARNING", log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return image_folder(str(tmp_path_factory.mktemp("ray-images") / "photos"))


@pytest.fixture(scope="module")
def local_index(tmp_path_factory, folder, tiny_openclip, tiny_openclip_b):
    """The local engine's index of the folder: what every Ray run must reproduce."""
    index_dir = str(tmp_path_factory.mktemp("local-index"))
    report = index_folder(folder, [tiny_openclip, tiny_openclip_b], index_dir, batch_size=BATCH_SIZE)
    assert len(report.skipped) == 2  # the text file and the empty one
    return index_dir


def test_ray_gives_the_local_engines_ids_vectors_skips_and_search_results(
        cluster, folder, local_index, tmp_path, tiny_openclip, tiny_openclip_b):
    specs = [tiny_openclip, tiny_openclip_b]
    index_dir = str(tmp_path / "ray-index")
    report = index_folder(folder, specs, index_dir, batch_size=BATCH_SIZE, engine="ray", ray_options=OPTIONS)

    n_images = len(os.listdir(folder)) - 2
    assert report.embedded == {spec: n_images for spec in specs}
    assert sorted(s["reason"] for s in report.skipped) == ["empty file", "not an image (unrecognised format)"]
    assert_same_index(snapshot(index_dir, specs), snapshot(local_index, specs))
    assert_index_checks_out(index_dir)
    for spec in specs:
        local, remote = Searcher(spec, local_index), Searcher(spec, index_dir)
        for query in ("a cat", "a rocket on the launch pad"):
            assert [r["path"] for r in remote.text(query, k=10).results] == \
                   [r["path"] for r in local.text(query, k=10).results]
        local.close()
        remote.close()
    assert os.listdir(os.path.join(index_dir, SHARD_DIR)) == []  # every shard merged, then deleted

    again = index_folder(folder, specs, index_dir, batch_size=BATCH_SIZE, engine="ray", ray_options=OPTIONS)
    assert again.embedded == {spec: 0 for spec in specs}
    assert again.notes == ["ray: 0 shards (0 merged from files a killed run left, holding 0 vectors; 0 computed)"]


def test_shard_files_on_disk_are_merged_and_only_a_short_one_is_computed_again(
        cluster, folder, local_index, tmp_path, tiny_openclip):
    """A driver killed after its shards were written and before they were merged; one file
    lost its last row."""
    index_dir = str(tmp_path / "ray-index")
    model = get_model(tiny_openclip)
    store = Store(index_dir)
    rows = [register_model(store, model, None)]
    apply_folder_changes(store, folder, list(scan(folder)), FolderChanges())
    targets = shard_models([model], rows)
    planned = plan(store, targets, folder, SHARD_SIZE)
    store.close()
    assert len(planned) >= 4
    shard_dir = os.path.join(index_dir, SHARD_DIR)
    vectors = {}  # per shard, the images that decoded: those with a vector
    for shard, table in run_shards(planned, targets, OPTIONS, BATCH_SIZE, decode_side([model])):
        vectors[shard.name] = len(shards.vectors_of(table, targets[0])[0])
        if shard is planned[1]:
            table = table.slice(0, len(shard) - 1)
        shards.write(table, shard.file(shard_dir))
    n_images = len(os.listdir(folder)) - 2
    assert sum(vectors.values()) == n_images

    report = index_folder(folder, [tiny_openclip], index_dir, batch_size=BATCH_SIZE, engine="ray",
                          ray_options=OPTIONS)
    left = n_images - vectors[planned[1].name]
    assert report.notes == [f"ray: {len(planned)} shards ({len(planned) - 1} merged from files a killed run left, "
                            f"holding {left} vectors; 1 computed)"]
    # embedded: what this run computed; the killed run's vectors were committed, not embedded again
    assert report.embedded == {tiny_openclip: vectors[planned[1].name]}
    assert_same_index(snapshot(index_dir, [tiny_openclip]), snapshot(local_index, [tiny_openclip]))
    assert_index_checks_out(index_dir)
    assert os.listdir(shard_dir) == []


def test_a_driver_killed_mid_run_resumes_to_the_clean_runs_index(cluster, folder, local_index, tmp_path,
                                                                 tiny_openclip):
    specs = [tiny_openclip]
    n_images = len(os.listdir(folder)) - 2
    index_dir = str(tmp_path / "ray-index")
    command = [sys.executable, "-m", "imgsearch", "index", folder, "--model", tiny_openclip,
               "--index-dir", index_dir, "--engine", "ray", "--ray-address", cluster, "--workers", "1",
               "--shard-size", str(SHARD_SIZE), "--batch-size", str(BATCH_SIZE)]
    driver = subprocess.Popen(command, env={**os.environ, **RAY_ENV}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while committed_vectors(index_dir) == 0 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGSTOP)  # frozen: what it committed cannot change while it is counted
    assert driver.poll() is None, "the run ended before it could be killed: " + driver.stderr.read().decode()[-500:]
    kept = committed_vectors(index_dir)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert 0 < kept < n_images

    report = index_folder(folder, specs, index_dir, batch_size=BATCH_SIZE, engine="ray", ray_options=OPTIONS)
    # Every vector the killed run did not commit is merged from its shard file or computed, once.
    held = int(re.search(r"holding (\d+) vectors", report.notes[-1]).group(1))
    assert report.embedded[tiny_openclip] + held == n_images - kept
    assert_same_index(snapshot(index_dir, specs), snapshot(local_index, specs))
    assert_index_checks_out(index_dir)
    again = index_folder(folder, specs, index_dir, batch_size=BATCH_SIZE, engine="ray", ray_options=OPTIONS)
    assert again.embedded == {tiny_openclip: 0} and os.listdir(os.path.join(index_dir, SHARD_DIR)) == []


def test_without_ray_the_ray_engine_says_in_one_line_how_to_install_it(tmp_path, photos, tiny_openclip,
                                                                      monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "imgsearch.ray_engine")
    monkeypatch.setattr(sys, "argv", ["imgsearch", "index", os.path.dirname(photos["cat.png"]), "--model",
                                      tiny_openclip, "--index-dir", str(tmp_path / "index"), "--engine", "ray"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["Error: this needs Ray: pip install 'imgsearch-bench[ray]'"]
    assert not os.path.exists(tmp_path / "index")

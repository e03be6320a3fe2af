"""The Ray engine on a simulated cluster (ray.cluster_utils.Cluster: a head that runs no work and
two worker nodes, each declaring one GPU, so that model actors are scheduled per GPU and decoding
runs as separate CPU tasks feeding them; torch finds no CUDA here, so the actors compute on the
CPU): a worker node killed mid-run, and the job still ends with the local engine's index."""

import os
import threading
import time

import pytest
import ray
import ray._private.state as ray_state
from ray.cluster_utils import Cluster

from imgsearch.indexer import index_folder
from imgsearch.ray_options import RayOptions

from ray_helpers import (BATCH_SIZE, OBJECT_STORE_BYTES, RAY_ENV, SHARD_SIZE, assert_index_checks_out,
                         assert_same_index, committed_vectors, image_folder, snapshot)


@pytest.fixture(scope="module")
def cluster():
    os.environ.update(RAY_ENV)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": OBJECT_STORE_BYTES, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=2, num_gpus=1, object_store_memory=OBJECT_STORE_BYTES) for _ in range(2)]
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return image_folder(str(tmp_path_factory.mktemp("cluster-images") / "photos"))


def nodes_with_model_actors() -> set[str]:
    return {info["Address"]["NodeID"] for info in ray_state.actors().values()
            if info["State"] == "ALIVE" and "EmbedActor" in info.get("ActorClassName", "")}


def test_a_worker_node_killed_mid_run_still_ends_with_the_local_engines_index(cluster, folder, tmp_path,
                                                                               tiny_openclip):
    cluster, workers = cluster
    local = str(tmp_path / "local")
    index_folder(folder, [tiny_openclip], local, batch_size=BATCH_SIZE)
    n_images = len(os.listdir(folder)) - 2

    index_dir = str(tmp_path / "ray")
    outcome = {}

    def run():
        try:
            outcome["report"] = index_folder(folder, [tiny_openclip], index_dir, batch_size=BATCH_SIZE, engine="ray",
                                             ray_options=RayOptions(shard_size=SHARD_SIZE, workers=2, gpus_per_worker=1))
        except BaseException as e:  # handed to the test thread below
            outcome["error"] = e

    driver = threading.Thread(target=run)
    driver.start()
    deadline = time.monotonic() + 120
    while committed_vectors(index_dir) == 0 and driver.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    busy = nodes_with_model_actors()
    victim = next(node for node in workers if node.node_id in busy)  # a node that holds a model actor
    cluster.remove_node(victim, allow_graceful=False)
    assert committed_vectors(index_dir) < n_images  # the node died before the run was done
    driver.join(timeout=300)

    assert not driver.is_alive() and "error" not in outcome, outcome.get("error")
    assert outcome["report"].embedded == {tiny_openclip: n_images}
    assert_same_index(snapshot(index_dir, [tiny_openclip]), snapshot(local, [tiny_openclip]))
    assert_index_checks_out(index_dir)
    again = index_folder(folder, [tiny_openclip], index_dir, batch_size=BATCH_SIZE, engine="ray",
                         ray_options=RayOptions(shard_size=SHARD_SIZE, workers=1, gpus_per_worker=1))
    assert again.embedded == {tiny_openclip: 0}

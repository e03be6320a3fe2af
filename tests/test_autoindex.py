"""The automatic FAISS index choice: which factory for which collection, and building it."""

import faiss
import numpy as np
import pytest

from imgsearch.autoindex import (
    apply_search_params,
    build_index,
    choose_factory,
    estimated_index_bytes,
    ivf_nlist,
    search_params,
    validate_factory,
)
from imgsearch.errors import UsageError

GIB = 2**30


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_small_collections_stay_exact():
    assert choose_factory(1, 512) == "Flat"
    assert choose_factory(10_000, 512) == "Flat"
    # the limit is on n * dim: smaller vectors stay exact for longer
    assert choose_factory(50_000, 128) == "Flat"


def test_larger_collections_get_inverted_lists_of_full_vectors():
    assert choose_factory(20_000, 512) == "IVF512,Flat"
    assert choose_factory(100_000, 512) == "IVF1024,Flat"
    assert choose_factory(1_000_000, 512) == "IVF4096,Flat"


def test_tight_memory_picks_compressed_codes():
    # IVF-Flat needs about 2 GiB for 1M x 512 floats
    assert choose_factory(1_000_000, 512, memory_budget_bytes=1 * GIB) == "IVF4096,SQ8"
    assert choose_factory(1_000_000, 512, memory_budget_bytes=200 * 2**20) == "IVF4096,PQ128np"
    assert choose_factory(5_000, 512, memory_budget_bytes=5_000 * 600) == "SQ8"


def test_a_budget_nothing_fits_is_a_usage_error():
    with pytest.raises(UsageError, match="no index for 1000000 vectors of dimension 512 fits in 1000 bytes"):
        choose_factory(1_000_000, 512, memory_budget_bytes=1000)


def test_nlist_is_four_sqrt_n_as_a_power_of_two_with_enough_training_points():
    assert ivf_nlist(1_000_000) == 4096
    assert ivf_nlist(100_000) == 1024
    # 4·sqrt(10k) = 400 -> 512, but 512 lists need 39 x 512 > 10k training points
    assert ivf_nlist(10_000) == 256
    assert ivf_nlist(10) == 1


def test_search_params_follow_the_index_and_its_size():
    assert search_params("Flat", 10_000) == {}
    assert search_params("HNSW32", 100_000) == {"efSearch": 64}
    assert search_params("HNSW32", 1_000_000) == {"efSearch": 256}
    assert search_params("IVF4096,Flat", 1_000_000) == {"nprobe": 16}
    assert search_params("IVF4096,PQ64np", 1_000_000) == {"nprobe": 16}
    # never more probes than lists
    assert search_params("IVF8,SQ8", 1_000) == {"nprobe": 8}


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF16,SQ8"])
def test_memory_estimate_matches_the_serialised_index_plus_the_reverse_id_map(factory):
    n, dim = 2_000, 64
    index = build_index(factory, unit_rows(n, dim), np.arange(n))
    serialised = faiss.serialize_index(index).size
    reverse_map_bytes = 40 * n  # rebuilt on load, so not in the file
    assert estimated_index_bytes(factory, n, dim) - reverse_map_bytes == pytest.approx(serialised, rel=0.1)


def test_flat_index_returns_the_given_ids_and_the_exact_top_k():
    vectors, queries = unit_rows(500, 32), unit_rows(5, 32, seed=1)
    ids = np.arange(1000, 1500, dtype=np.int64)
    index = build_index("Flat", vectors, ids)
    scores, found = index.search(queries, 10)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    assert (found == ids[exact]).all()
    assert index.metric_type == faiss.METRIC_INNER_PRODUCT
    assert np.allclose(scores, np.take_along_axis(queries @ vectors.T, exact, axis=1), atol=1e-5)


def test_ivf_index_trains_and_maps_to_the_given_ids():
    vectors = unit_rows(39 * 16, 32)
    ids = np.arange(len(vectors), dtype=np.int64) * 7
    index = build_index("IVF16,Flat", vectors, ids)
    apply_search_params(index, {"nprobe": 16})  # all lists: exact
    _, found = index.search(vectors[:3], 1)
    assert found[:, 0].tolist() == [0, 7, 14]


def test_too_few_vectors_to_train_ivf_is_a_one_line_usage_error():
    with pytest.raises(UsageError) as error:
        build_index("IVF64,Flat", unit_rows(1000, 32), np.arange(1000))
    message = str(error.value)
    assert message == (
        "index 'IVF64,Flat' needs at least 2496 vectors to train, got 1000; "
        "use a smaller nlist or a Flat index"
    )


def test_validate_factory_rejects_a_bad_string_in_one_line():
    with pytest.raises(UsageError) as error:
        validate_factory("IVF-bogus", 64)
    assert str(error.value) == (
        "bad FAISS index factory string 'IVF-bogus': could not parse index string IVF-bogus"
    )


def test_validate_factory_rejects_pq_that_does_not_divide_the_dimension():
    expected = "^bad FAISS index factory string 'PQ7': .*multiple of the number of subquantizers"
    with pytest.raises(UsageError, match=expected) as error:
        validate_factory("PQ7", 64)
    assert "\n" not in str(error.value)


def test_validate_factory_leaves_the_id_map_to_imgsearch():
    with pytest.raises(UsageError, match="imgsearch adds the IDMap2 itself"):
        validate_factory("IDMap2,Flat", 64)
    validate_factory("HNSW32", 64)


def test_search_params_reach_the_index_inside_the_id_map():
    vectors = unit_rows(1000, 16)
    hnsw = build_index("HNSW32", vectors, np.arange(1000))
    apply_search_params(hnsw, {"efSearch": 77})
    assert faiss.downcast_index(hnsw.index).hnsw.efSearch == 77
    ivf = build_index("IVF8,Flat", vectors, np.arange(1000))
    apply_search_params(ivf, {"nprobe": 3})
    assert faiss.extract_index_ivf(ivf).nprobe == 3


def test_an_unknown_search_param_is_a_usage_error():
    flat = build_index("Flat", unit_rows(10, 8), np.arange(10))
    expected = "^cannot set efSearch=64 on this index: .*could not set parameter efSearch$"
    with pytest.raises(UsageError, match=expected):
        apply_search_params(flat, {"efSearch": 64})


def test_scalar_quantiser_trains_its_ranges_on_the_collection():
    vectors = unit_rows(2000, 32)
    index = build_index("SQ8", vectors, np.arange(2000))
    _, found = index.search(vectors[:50], 1)
    assert found[:, 0].tolist() == list(range(50))

"""Shared model behaviour: one query encodes on one thread, and the thread count comes back."""

import torch

from imgsearch.models.base import one_thread


def test_overlapping_queries_restore_the_thread_count():
    before = torch.get_num_threads()
    first, second = one_thread(), one_thread()
    first.__enter__()
    second.__enter__()  # a second query (another server thread) starts before the first ends
    assert torch.get_num_threads() == 1
    first.__exit__(None, None, None)
    assert torch.get_num_threads() == 1  # the second is still encoding
    second.__exit__(None, None, None)
    assert torch.get_num_threads() == before

"""Canonical batches and the runner that spreads them over the cores (classify/backends.py), with a fake ``run``:
no model, so these are fast."""

import threading

import numpy as np
import pytest

from classify import backends
from classify.backends import batch_rows, canonical_batches, encode_canonical


def _fake_run(lengths):
    """One output row per padded index: the index and its text's length, so misplaced rows show."""
    def run(padded):
        return np.array([[i, lengths[i]] for i in padded], np.float32)
    return run


def test_canonical_batches_hold_one_length_and_exactly_rows_rows():
    lengths = [5, 3, 5, 5, 3, 7]
    batches = list(canonical_batches(lengths, rows=2))
    assert [idx for idx, _ in batches] == [[1, 4], [0, 2], [3], [5]]  # ascending lengths, call order inside
    assert [padded for _, padded in batches] == [[1, 4], [0, 2], [3, 3], [5, 5]]  # short batches repeat the last
    for idx, padded in batches:
        assert len({lengths[i] for i in padded}) == 1


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_outputs_come_back_in_call_order_whoever_runs_them(workers):
    lengths = [4, 1, 4, 2, 9, 1, 1, 4, 2]
    out = encode_canonical(lengths, rows=2, run=_fake_run(lengths), workers=workers)
    np.testing.assert_array_equal(out, np.array([[i, n] for i, n in enumerate(lengths)], np.float32))
    assert encode_canonical([], rows=2, run=_fake_run([]), workers=workers) is None


def test_workers_run_batches_at_the_same_time():
    """With 2 workers two batches are in flight at once: each run waits at a barrier for the other, which only a
    runner that really runs them side by side gets past (a sequential one breaks the barrier by timeout)."""
    lengths = [3, 3, 5, 5]
    barrier = threading.Barrier(2, timeout=10)
    plain = _fake_run(lengths)

    def run(padded):
        barrier.wait()
        return plain(padded)

    out = encode_canonical(lengths, rows=2, run=run, workers=2)
    np.testing.assert_array_equal(out[:, 0], np.arange(4))
    with pytest.raises(threading.BrokenBarrierError):
        encode_canonical(lengths, rows=2, run=lambda p: (threading.Barrier(2, timeout=0.2).wait(), plain(p))[1],
                         workers=1)


def test_onnx_sessions_run_one_thread_each_and_one_batch_per_core(monkeypatch):
    pytest.importorskip("onnxruntime")
    options = backends.session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    monkeypatch.setattr(backends, "_threads", lambda: 5)
    assert backends.onnx_workers() == 5


def test_int8_batches_are_one_text_each():
    assert batch_rows("onnx-int8", 8) == 1
    assert batch_rows("onnx", 8) == 8 and batch_rows("torch", 3) == 3

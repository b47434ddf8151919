"""kernels.decode: exactness against the float64 reference (the project's rule), layouts, and clear errors.

Runs in the Triton interpreter on CPU (small shapes) and unchanged on a GPU."""
import pytest
import torch

from kernels.decode_kv import decode, decode_plan
from kernels.decode_testing import CASES, make_decode_inputs, run_decode_case
from memsim.inference import DecodeSchedule



@pytest.mark.parametrize("name", list(CASES))
def test_decode_matches_reference(name, device):
    B, Nq, Hq, Hkv, d, lens, dtype, page, splits = CASES[name]
    run_decode_case(B, Nq, Hq, Hkv, d, lens, dtype, device, page_size=page, num_splits=splits)


@pytest.mark.parametrize("pack_gqa", [True, False])
@pytest.mark.parametrize("block_n", [16, 32])
def test_decode_schedules(pack_gqa, block_n, device):
    """Unpacked GQA (one CTA per query head) and a K/V tile spanning several 16-token pages."""
    s = DecodeSchedule(num_splits=3, pack_gqa=pack_gqa, block_n=block_n, num_warps=1 if device == "cpu" else 4,
                       num_stages=1 if device == "cpu" else 2)
    run_decode_case(2, 2, 8, 2, 32, [77, 3], "bf16", device, page_size=16, schedule=s)


@pytest.mark.parametrize("page,block_n", [(16, 16), (16, 32), (32, 16), (7, 16), (4, 16), (8, 32), (12, 16)])
@pytest.mark.parametrize("prefetch", [False, True])
def test_decode_page_table_reads(page, block_n, prefetch, device):
    """One table entry per tile (page a multiple of the tile) or one per key -- with loop-invariant page and row
    terms for a power-of-two page below the tile (4, 8, 16), in general for 7 and 12; loaded ahead or not."""
    s = DecodeSchedule(num_splits=2, block_n=block_n, num_warps=1 if device == "cpu" else 4,
                       num_stages=1 if device == "cpu" else 3, page_prefetch=prefetch)
    run_decode_case(3, 1, 4, 2, 16, [70, 1, 33], "fp16", device, page_size=page, schedule=s)


@pytest.mark.parametrize("prefetch", [False, True])
@pytest.mark.parametrize("splits", [1, 3])
def test_decode_page_rows_ragged_empty_len1(prefetch, splits, device):
    """The page walk with loop-invariant page / row terms (4 pages of 4 rows per 16-key tile, 4 of 8 per 32-key
    tile) on empty, length-1, one-page and ragged caches, split or not: partial tiles and split boundaries."""
    for page, block_n in ((4, 16), (8, 32)):
        s = DecodeSchedule(num_splits=splits, block_n=block_n, num_warps=1 if device == "cpu" else 4,
                           num_stages=1 if device == "cpu" else 3, page_prefetch=prefetch)
        run_decode_case(5, 1, 8, 2, 16, [0, 1, page, 3 * block_n + 5, 2 * page + 1], "bf16", device,
                        page_size=page, schedule=s)


def test_decode_capacity_beyond_lengths(device):
    """A contiguous cache longer than every sequence: the NaN-filled tail is never read."""
    run_decode_case(2, 1, 4, 2, 16, [9, 30], "fp16", device, capacity=64, num_splits=2)


def test_auto_splits_is_visible(device):
    q, kc, vc, lens, bt, _ = make_decode_inputs(1, 1, 8, 2, 32, [100], "fp16", device, 1, capacity=256)
    p, s, why = decode_plan(q, kc, vc, lens)
    assert s.num_splits >= 1 and f"num_splits={s.num_splits}" in why
    assert p.seqlens_kv == (256,)  # the plan uses the capacity: no device sync
    _, s2, why2 = decode_plan(q, kc, vc, lens, num_splits=5)
    assert s2.num_splits == 5 and "given" in why2


def _inputs(device, page=None, lens=(10, 20)):
    return make_decode_inputs(2, 1, 4, 2, 16, list(lens), "fp16", device, 7, page_size=page)


BAD = {
    "q_3d": (lambda q, k, v, l, bt: (q[0], k, v, l, bt), "must be 4-D"),
    "kv_shapes": (lambda q, k, v, l, bt: (q, k, v[:, :5], l, bt), "same shape"),
    "dtype_mix": (lambda q, k, v, l, bt: (q.float(), k, v, l, bt), "share one dtype"),
    "heads": (lambda q, k, v, l, bt: (q[:, :, :3], k, v, l, bt), "multiple of heads"),
    "seqlens_int64": (lambda q, k, v, l, bt: (q, k, v, l.long(), bt), "int32"),
    "seqlens_shape": (lambda q, k, v, l, bt: (q, k, v, l[:1], bt), "shape (2,)"),
    "seqlens_too_long": (lambda q, k, v, l, bt: (q, k, v, l + 100, bt), "outside 0.."),
    "seqlens_negative": (lambda q, k, v, l, bt: (q, k, v, l - 50, bt), "outside 0.."),
    "batch": (lambda q, k, v, l, bt: (q, k[:1], v[:1], l, bt), "batch 2"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_decode_errors_contiguous(name, device):
    q, k, v, l, bt, _ = _inputs(device)
    f, msg = BAD[name]
    with pytest.raises((ValueError, TypeError)) as ei:
        decode(*f(q, k, v, l, bt)[:4], block_table=None)
    assert msg in str(ei.value), str(ei.value)


BAD_TABLE = {
    "page_out_of_range": (lambda bt, k: bt.index_fill_(1, torch.tensor([0], device=bt.device), k.shape[0]),
                          "names no page"),
    "negative_page_in_use": (lambda bt, k: bt.index_fill_(1, torch.tensor([0], device=bt.device), -1),
                             "names no page"),
    "table_int64": (lambda bt, k: bt.long(), "int32"),
    "table_rows": (lambda bt, k: bt[:1], "shape (2, max_pages_per_seq)"),
    "table_too_short": (lambda bt, k: bt[:, :1], "outside 0.."),
}


@pytest.mark.parametrize("name", list(BAD_TABLE))
def test_decode_errors_paged(name, device):
    q, k, v, l, bt, _ = _inputs(device, page=8)
    f, msg = BAD_TABLE[name]
    with pytest.raises((ValueError, TypeError)) as ei:
        decode(q, k, v, l, block_table=f(bt.clone(), k))
    assert msg in str(ei.value), str(ei.value)


def test_decode_unused_table_entries_may_be_anything(device):
    """Entries past a sequence's pages are -1 in make_decode_inputs: accepted, never read."""
    q, k, v, l, bt, _ = _inputs(device, page=8, lens=(3, 20))
    assert int(bt[0, 1]) == -1
    out = decode(q, k, v, l, block_table=bt)
    assert not torch.isnan(out).any()


def test_num_splits_must_be_positive(device):
    q, k, v, l, bt, _ = _inputs(device)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_splits"):
            decode(q, k, v, l, num_splits=bad)


def test_check_values_false_skips_only_the_content_checks(device):
    q, k, v, l, bt, _ = _inputs(device)
    import kernels
    out = kernels.decode(q, k, v, l, check_values=False)
    assert out.shape == q.shape and not torch.isnan(out).any()
    with pytest.raises(ValueError, match="int32"):
        kernels.decode(q, k, v, l.long(), check_values=False)  # shapes and dtypes are still checked

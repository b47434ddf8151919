"""The correctness gate every implementation passes before it is timed: DESIGN.md's rule on batch 0,
heads 0..1 of the benchmark's own inputs."""
from __future__ import annotations

from dataclasses import replace

from attention_impls import Impl

_CACHE = {}


def clear_cache():
    _CACHE.clear()


def _refs(problem, qs, ks, vs, dos, want_bwd):
    """float64 reference and the rule's yardsticks (kernels.testing.yardsticks) of the gate slice, once per case."""
    import kernels
    key = (qs.data_ptr(), problem, want_bwd)
    if key not in _CACHE:
        _CACHE.clear()
        from kernels.testing import yardsticks
        ref = kernels.reference(qs, ks, vs, causal=problem.causal, do=dos if want_bwd else None)
        _CACHE[key] = (ref, yardsticks(qs, ks, vs, causal=problem.causal, do=dos if want_bwd else None))
    return _CACHE[key]


def gate(impl_name, problem, q, k, v, do, args, passes):
    """(ok, message) of the rule on the gate slice."""
    from kernels.testing import check_rule
    sl = (slice(0, 1), slice(0, min(2, q.shape[1])))
    qs, ks, vs, dos = (t[sl] for t in (q, k, v, do))
    sub = replace(problem, batch=1, heads_q=qs.shape[1], heads_kv=ks.shape[1])
    impl = Impl(impl_name, sub, qs, ks, vs, dos, args)
    want_bwd = "bwd" in passes
    try:
        ref, ys = _refs(sub, qs, ks, vs, dos, want_bwd)
        o = impl.output(impl.fwd())
        check_rule("o", o, ref[0], dtype=problem.dtype, verbose=False, **ys["o"])
        if want_bwd and impl_name != "flash1":
            impl.prepare_bwd()
            grads = impl.bwd()
            for name, g, gr in zip(("dq", "dk", "dv"), grads, ref[2:]):
                check_rule(name, g, gr, dtype=problem.dtype, verbose=False, **ys[name])
        return True, "ok"
    except AssertionError as exc:
        return False, str(exc)[:300]

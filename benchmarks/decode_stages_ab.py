"""Pipeline depth at one CTA per SM (issue 12, session 12): kernels.decode with num_stages 3 / 4 / 5 (2 / 3 / 4 K+V
tiles in flight; 72 / 104 / 137 KB of shared memory: 3 / 2 / 1 CTAs per SM), contiguous and paged (16 / 64-token pages,
page_prefetch), each at the split count the rule picks for that depth and at the depth-3 pick, over caches that are not
in the L2 (n cache copies per CUDA graph, >= --rotate-mb together, as benchmarks/decode_cold.py), SDPA cuDNN in the same
run; every configuration passes DESIGN.md's rule on copy 0 first.  bf16, d = 128, 32 / 8 heads, one query token, the
combine as a programmatic dependent launch (kernels.decode's default).  Writes the model's prediction
(`memsim.inference.estimate_time_graph_s`) beside each measurement.

    PYTHONPATH=. python3 benchmarks/decode_stages_ab.py --out /tmp/stages.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.decode_cold import D, HKV, HQ, graph_time_s, rotated_caches  # noqa: E402  (one home)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", default="1x8192,8x1024,1x32768,8x32768")
    ap.add_argument("--stages", default="3,4,5")
    ap.add_argument("--pages", default="0,16,64", help="0 = contiguous")
    ap.add_argument("--rotate-mb", type=float, default=400.0)
    ap.add_argument("--rep-ms", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=80)
    a = ap.parse_args(argv)
    import torch
    import triton
    from dataclasses import replace
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from kernels.decode_kv import decode
    from kernels.decode_testing import make_problem_inputs
    from kernels.testing import check_rule
    from memsim.hardware import load_hardware
    from memsim.inference import DecodeProblem, DecodeSchedule, DeviceFacts, auto_num_splits, estimate_time_graph_s
    from memsim.io import base_provenance, write_json

    facts = DeviceFacts.from_hardware(load_hardware("h100-sxm"))
    t0 = time.time()
    rows, notes = [], []

    def timed(fns):
        return graph_time_s(fns, a.rep_ms)

    for shape in a.shapes.split(","):
        if time.time() - t0 > a.budget_s:
            notes.append(f"budget reached before {shape}")
            break
        B, N = (int(v) for v in shape.split("x"))
        p0, sets, ref, naive = rotated_caches(B, N, a.rotate_mb)
        kv, n = p0.kv_bytes(), len(sets)

        def gate(name, out):
            check_rule(name, out.transpose(1, 2)[:1], ref, naive, "bf16", verbose=False)

        for ps in (int(v) for v in a.pages.split(",")):
            if ps:  # the contiguous rows copied into shuffled pages
                pp = DecodeProblem.uniform(B, HQ, HKV, D, N, dtype="bf16", page_size=ps)
                lsets = []
                for i, st in enumerate(sets):
                    _, pk, pv, _, bt = make_problem_inputs(pp, "cuda", seed=B * 1000003 + N + i)
                    flat = bt[:, :N // ps].reshape(-1).long()
                    pk[flat] = st[1].reshape(B * (N // ps), ps, HKV, D)
                    pv[flat] = st[2].reshape(B * (N // ps), ps, HKV, D)
                    lsets.append((st[0], pk, pv, st[3], bt))
            else:
                pp, lsets = p0, [(st[0], st[1], st[2], st[3], None) for st in sets]
            base = DecodeSchedule(page_prefetch=bool(ps), combine_pdl=True)
            s3 = auto_num_splits(pp, base, facts)[0]
            for stg in (int(v) for v in a.stages.split(",")):
                sch = replace(base, num_stages=stg)
                own = auto_num_splits(pp, sch, facts)[0]
                for S in sorted({own, s3}):
                    if time.time() - t0 > a.budget_s * 1.3:
                        break
                    try:
                        st0 = lsets[0]
                        gate(f"st{stg} S{S} page{ps}", decode(st0[0], st0[1], st0[2], st0[3], block_table=st0[4],
                                                               schedule=sch, num_splits=S))
                        t = timed([lambda st=st, S=S: decode(st[0], st[1], st[2], st[3], block_table=st[4],
                                                             schedule=sch, num_splits=S) for st in lsets])
                        pred = estimate_time_graph_s(pp, replace(sch, num_splits=S), facts)["time_s"]
                        rows.append(dict(batch=B, context=N, page_size=ps, num_stages=stg, num_splits=S,
                                         rule_pick=(S == own), s=t, ms=t[0] * 1e3, kv_read_TBps=kv / t[0] / 1e12,
                                         predicted_s=pred, copies=n))
                        print(f"{B}x{N} page{ps} st{stg} S={S}{' (rule)' if S == own else ''}: {t[0] * 1e6:.2f} / "
                              f"{t[1] * 1e6:.2f} us ({kv / t[0] / 1e12:.2f} TB/s), model {pred * 1e6:.2f}", flush=True)
                    except Exception as exc:
                        notes.append(f"{shape} page{ps} st{stg} S{S}: {exc!r}"[:300])
                        print(notes[-1], flush=True)
            del lsets
        ssets = [(st[0].transpose(1, 2).contiguous(), st[1].transpose(1, 2).contiguous(),
                  st[2].transpose(1, 2).contiguous()) for st in sets]

        def cudnn(st):
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(st[0], st[1], st[2], enable_gqa=True)
        try:
            check_rule("cudnn", cudnn(ssets[0])[:1], ref, naive, "bf16", verbose=False)
            t = timed([lambda st=st: cudnn(st) for st in ssets])
            rows.append(dict(batch=B, context=N, impl="sdpa_cudnn", s=t, ms=t[0] * 1e3, kv_read_TBps=kv / t[0] / 1e12))
            print(f"{B}x{N} sdpa_cudnn: {t[0] * 1e6:.2f} / {t[1] * 1e6:.2f} us", flush=True)
        except Exception as exc:
            notes.append(f"cudnn {shape}: {exc!r}"[:300])
        del sets, ssets
        torch.cuda.empty_cache()
    prov = base_provenance("python3 benchmarks/decode_stages_ab.py " + " ".join(argv or sys.argv[1:]))
    prov.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                cuda=torch.version.cuda)
    write_json(a.out, dict(provenance=prov, rows=rows, notes=notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

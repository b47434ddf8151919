"""The implementations the attention benchmark times: our kernels and torch SDPA's backends, each as
fwd()/bwd() closures over fixed inputs."""
from __future__ import annotations

IMPLS = ("naive", "flash1", "flash2", "sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "sdpa_math")
OURS = ("naive", "flash1", "flash2")


def sdpa_backend(impl):
    from torch.nn.attention import SDPBackend
    return {"sdpa_flash": SDPBackend.FLASH_ATTENTION, "sdpa_efficient": SDPBackend.EFFICIENT_ATTENTION,
            "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION, "sdpa_math": SDPBackend.MATH}[impl]


def schedule_for(override, problem, alg, phase, device):
    """The default schedule of `alg`, or for flash2 the override 'block_m,block_n,warps,stages'."""
    import kernels
    from memsim.schedule import Schedule
    if override is None or alg != "flash2":
        return kernels.default_schedule(problem, alg, phase, device)
    bm, bn, w, st = (int(x) for x in override.split(","))
    return Schedule(algorithm=alg, phase=phase, block_m=bm, block_n=bn, num_warps=w, num_stages=st)


class Impl:
    """fwd() and bwd() closures for one implementation on fixed inputs."""

    def __init__(self, name, problem, q, k, v, do, args):
        import torch
        import kernels
        self.name, self.problem = name, problem
        self.q, self.k, self.v, self.do = q, k, v, do
        self.causal = problem.causal
        self.schedules = {}
        if name in OURS:
            self.schedules["fwd"] = schedule_for(args.fwd_schedule, problem, name, "fwd", args.device)
            bwd_alg = "naive" if name == "naive" else "flash2"
            self.schedules["bwd"] = schedule_for(args.bwd_schedule, problem, bwd_alg, "bwd", args.device)
            self._kernels = kernels
        self._torch = torch
        self._saved = None

    def fwd(self):
        if self.name in OURS:
            return self._kernels.forward(self.problem, self.schedules["fwd"], self.q, self.k, self.v)
        from torch.nn.attention import sdpa_kernel
        with sdpa_kernel(sdpa_backend(self.name)):
            return self._torch.nn.functional.scaled_dot_product_attention(self.q, self.k, self.v,
                                                                         is_causal=self.causal)

    def prepare_bwd(self):
        """Run the forward once, keeping what the backward needs."""
        if self.name in OURS:
            if self.name == "flash1":
                raise NotImplementedError("flash1 has no backward")
            self._saved = self.fwd()
        else:
            q, k, v = (t.detach().requires_grad_(True) for t in (self.q, self.k, self.v))
            from torch.nn.attention import sdpa_kernel
            with sdpa_kernel(sdpa_backend(self.name)):
                o = self._torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
            self._saved = (q, k, v, o)

    def bwd(self):
        if self.name in OURS:
            f = self._saved
            return self._kernels.backward(self.problem, self.schedules["bwd"], self.q, self.k, self.v, f.o,
                                          self.do, f)
        q, k, v, o = self._saved
        return self._torch.autograd.grad(o, (q, k, v), self.do, retain_graph=True)

    def output(self, res):
        return res.o if self.name in OURS else res


def make_inputs(problem, device, seed=0):
    """q, k, v, do of the problem's shapes (kernels.testing.make_inputs: the one input maker)."""
    from kernels.testing import make_inputs as _make
    p = problem
    return _make(p.batch, p.heads_q, p.heads_kv, p.seq_q, p.seq_kv, p.head_dim, p.dtype, device, seed)

# %% [markdown]
# # What if the L2 were smaller? A memsim study, end to end
#
# Notebook cells (`# %%`): open this file in Jupyter (jupytext), VS Code or PyCharm and run the
# cells, or run it as a script (`python examples/study_l2_whatif.py`).  It needs the `study` extra
# (`pip install -e '.[study]'`, i.e. pandas) and runs in seconds on a laptop: no GPU.
#
# The question: on the default preset (H100 SXM), how much DRAM traffic does attention cost when
# the L2 shrinks, for the naive algorithm (S and P through memory) and for FlashAttention-2?

# %%
import os
from pathlib import Path

from memsim import load_hardware
from memsim.plots import sweep_figure
from memsim.sweep import SweepSpec, run_sweep

hw = load_hardware("h100-sxm")
print(hw.name, "L2", hw.l2_bytes / 2**20, "MiB")

# %% [markdown]
# Three axes: an L2 size (a hardware key, any preset key works), the sequence length and the
# algorithm.  Everything else is fixed in `base`.  `run_sweep(..., out="sweeps/l2")` would stream the
# points to disk, resume after an interrupt and publish CSV/JSON/Parquet; in a notebook the rows in
# memory are enough.  `backend="dask"` runs the same points on a Dask cluster.

# %%
spec = SweepSpec(hardware="h100-sxm",
                 base={"batch": 1, "heads": 4, "head_dim": 64, "dtype": "fp16"},
                 axes={"l2_bytes": [4 << 20, hw.l2_bytes], "seq": [256, 512, 1024],
                       "algorithm": ["naive", "flash2"]})
result = run_sweep(spec, workers=1, progress=False)
print(spec.n_points, "points:", result.counts())

# %%
df = result.to_frame()
df["dram_MB"] = (df.dram_read_bytes + df.dram_write_bytes) / 1e6
table = df.pivot_table(index=["algorithm", "seq"], columns="l2_bytes", values="dram_MB")
table.columns = [f"L2 {c / 2**20:.0f} MiB: DRAM MB" for c in table.columns]
table

# %% [markdown]
# The figure: traffic and time against the sequence length at the small L2 (a `matplotlib.figure.Figure`;
# as a cell's value it shows inline, and building it never changes the notebook's backend).

# %%
small = df[df.l2_bytes == 4 << 20]
fig = sweep_figure(small, x="seq", hue="algorithm", title="h100-sxm with a 4 MiB L2: naive vs flash2, B=1 H=4 d=64 fp16")
fig

# %%
out = Path(os.environ.get("STUDY_OUT", "study_out"))
out.mkdir(parents=True, exist_ok=True)
fig.savefig(out / "l2_whatif.png", dpi=100)
table.to_csv(out / "l2_whatif.csv")
naive = table.loc["naive"]
print(f"naive DRAM traffic at N=1024 grows {naive.iloc[-1, 0] / naive.iloc[-1, 1]:.1f}x when the L2 shrinks "
      f"to 4 MiB; wrote {out / 'l2_whatif.png'}")

"""Hardware presets as data: every figure sourced, clear errors for bad files."""
import dataclasses

import pytest

from memsim.hardware import Hardware, HardwareError, hardware_from_dict, load_hardware, preset_names

PRESETS = ["h100-sxm", "a100-40gb", "a100-80gb", "h200"]


def test_all_presets_present():
    assert set(PRESETS) <= set(preset_names())


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_with_a_source_for_every_figure(name):
    hw = load_hardware(name)
    assert isinstance(hw, Hardware) and hw.name == name
    for f in dataclasses.fields(Hardware):
        if f.name in ("name", "description", "sources"):
            continue
        src = hw.sources.get(f.name, "")
        assert src and not src.startswith("from "), f"{name}: {f.name} has no source in [sources]"
    assert hw.smem_per_block_bytes <= hw.smem_per_sm_bytes
    assert hw.tensor_flops_per_s("fp16") > hw.tensor_flops_per_s("fp32")


def test_h100_uses_measured_ceilings():
    hw = load_hardware("h100-sxm")
    assert hw.num_sms == 132 and hw.l2_bytes == 52428800 and hw.smem_per_block_bytes == 232448
    assert hw.sources["dram_efficiency"].startswith("measured")
    assert 2.9e12 < hw.dram_achievable_Bps < 3.1e12


def test_unknown_preset_lists_names():
    with pytest.raises(HardwareError) as e:
        load_hardware("h999")
    for n in PRESETS:
        assert n in str(e.value)


def _write(tmp_path, text, name="hw.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_user_file_extends_a_preset(tmp_path):
    p = _write(tmp_path, 'extends = "h100-sxm"\nname = "my-h100"\nl2_bytes = 1048576\n[sources]\nl2_bytes = "mine"\n')
    hw = load_hardware(str(p))
    assert hw.name == "my-h100" and hw.l2_bytes == 1048576 and hw.num_sms == 132
    assert hw.sources["l2_bytes"] == "mine"


def test_full_user_file_roundtrip(tmp_path):
    d = load_hardware("h100-sxm").to_dict()
    d.pop("sources")
    lines = []
    for k, v in d.items():
        if isinstance(v, dict):
            continue
        lines.append(f"{k} = {v!r}".replace("'", '"'))
    lines.append("[tensor_flops_per_sm_per_cycle]")
    lines += [f"{k} = {v}" for k, v in d["tensor_flops_per_sm_per_cycle"].items()]
    hw = load_hardware(str(_write(tmp_path, "\n".join(lines) + "\n")))
    assert hw == load_hardware("h100-sxm")


@pytest.mark.parametrize("text, word", [
    ('extends = "h100-sxm"\nl2_byts = 5\n', "l2_byts"),                      # unknown key (typo)
    ('extends = "h100-sxm"\nsmem_per_block_bytes = 300000\n', "smem_per_block_bytes"),  # > per SM
    ('extends = "h100-sxm"\nnum_sms = 0\n', "num_sms"),
    ('extends = "h100-sxm"\ndram_bw_Bps = -1.0\n', "dram_bw_Bps"),
    ('extends = "h100-sxm"\ntensor_efficiency = 1.5\n', "tensor_efficiency"),
    ('extends = "h100-sxm"\n[tensor_flops_per_sm_per_cycle]\nfp8 = 1\n', "fp8"),
    ('extends = "h100-sxm"\nnum_sms = "many"\n', "num_sms"),
    ('name = "x"\nnum_sms = 4\n', "missing key"),
    ('extends = "h100-sxm"\nsmem_carveouts_bytes = [0, 65536, 32768]\n', "ascending"),   # carve-outs out of order
    ('extends = "h100-sxm"\nsmem_carveouts_bytes = [0, 65536]\n', "largest carve-out"),  # below smem per SM
    ('extends = "h100-sxm"\nl1_shared_per_sm_bytes = 0\n', "or neither"),              # one without the other
    ('extends = "h100-sxm"\nl1_shared_per_sm_bytes = -5\n', "l1_shared_per_sm_bytes"),
    ('this is not toml', "TOML"),
    ('extends = "nope"\n', "nope"),
])
def test_bad_file_names_the_key(tmp_path, text, word):
    with pytest.raises(HardwareError) as e:
        load_hardware(str(_write(tmp_path, text)))
    assert word in str(e.value)


def test_missing_file():
    with pytest.raises(HardwareError, match="does not exist"):
        load_hardware("/nonexistent/hw.toml")


def test_with_overrides_validates():
    hw = load_hardware("h100-sxm")
    assert hw.with_overrides(l2_bytes=4096).l2_bytes == 4096
    with pytest.raises(HardwareError, match="smem_per_block_bytes"):
        hw.with_overrides(smem_per_sm_bytes=1000)
    with pytest.raises(HardwareError, match="unknown"):
        hardware_from_dict({**hw.to_dict(), "warp_speed": 9})


def test_occupancy_limits():
    hw = load_hardware("h100-sxm")
    assert hw.ctas_per_sm(48 * 1024, 4) == (4, "shared memory")
    assert hw.ctas_per_sm(48 * 1024, 8) == (2, "registers")
    assert hw.ctas_per_sm(1024, 1) == (16, "registers")
    assert hw.with_overrides(regs_per_thread=32).ctas_per_sm(1024, 1) == (32, "max_ctas_per_sm")


# --- issue 11 item 4: bad hardware files are refused, naming the file ---------------------------
def test_extends_cycle_and_self_are_refused(tmp_path):
    a = _write(tmp_path, 'extends = "b.toml"\nname = "a"\n', "a.toml")
    _write(tmp_path, 'extends = "a.toml"\nname = "b"\n', "b.toml")
    with pytest.raises(HardwareError, match="circle"):
        load_hardware(str(a))
    me = _write(tmp_path, 'extends = "me.toml"\nname = "me"\n', "me.toml")
    with pytest.raises(HardwareError, match="circle"):
        load_hardware(str(me))


def test_relative_extends_is_taken_from_the_files_folder(tmp_path, monkeypatch):
    sub = tmp_path / "hw"
    sub.mkdir()
    _write(sub, 'extends = "h100-sxm"\nname = "base"\nl2_bytes = 2097152\n', "base.toml")
    child = _write(sub, 'extends = "base.toml"\nname = "child"\nnum_sms = 66\n', "child.toml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    hw = load_hardware(str(child))
    assert (hw.name, hw.l2_bytes, hw.num_sms) == ("child", 2097152, 66)


@pytest.mark.parametrize("line, word", [
    ("tensor_flops_per_sm_per_cycle = { fp16 = inf }", "tensor_flops_per_sm_per_cycle.fp16"),
    ("tensor_flops_per_sm_per_cycle = { bf16 = nan }", "tensor_flops_per_sm_per_cycle.bf16"),
    ("clock_Hz = inf", "clock_Hz"),
    ("dram_efficiency = nan", "dram_efficiency"),
    ("mem_latency_s = inf", "mem_latency_s"),
    ("description = 5", "description must be a string"),
    ("[sources]\nnot_a_figure = \"datasheet\"", "not_a_figure"),
    ("[sources]\nl2_bytes = 5", "must be a string"),
    ("extends = 7", "extends must be"),
])
def test_bad_figures_are_refused(tmp_path, line, word):
    text = f'extends = "h100-sxm"\nname = "x"\n{line}\n' if not line.startswith("extends") else f'{line}\nname = "x"\n'
    p = _write(tmp_path, text)
    with pytest.raises(HardwareError) as e:
        load_hardware(str(p))
    assert word in str(e.value) and str(p) in str(e.value)


def test_full_file_unknown_sources_key_refused(tmp_path):
    d = load_hardware("h100-sxm").to_dict()
    d["sources"] = {"bogus": "me"}
    with pytest.raises(HardwareError, match="bogus"):
        hardware_from_dict(d, origin="f.toml")


def test_non_utf8_file_names_the_file(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes('name = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(HardwareError) as e:
        load_hardware(str(p))
    assert str(p) in str(e.value) and "UTF-8" in str(e.value)


def test_cli_never_prints_nan(tmp_path, capsys):
    from memsim.__main__ import main
    p = _write(tmp_path, 'extends = "h100-sxm"\nname = "x"\ntensor_flops_per_sm_per_cycle = { fp16 = nan }\n')
    assert main(["simulate", "--hw", str(p), "--seq", "128", "--batch", "1", "--heads", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(p) in err

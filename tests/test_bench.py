"""Smoke run of ``python -m glimpse_demo bench`` on the tiny model: JSON schema and exact KV
accounting. No timing assertions: timings depend on the machine."""

from __future__ import annotations

import json

import pytest

from glimpse_demo import bench, cli

KEPT = (1.0, 0.25)
TOKENS = (16, 36)  # 4x4 and 6x6 grids: 0.25 of each is a whole number of tokens


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["bench", "--arch", "tiny", "--tokens", ",".join(map(str, TOKENS)), "--kept", ",".join(map(str, KEPT)),
            "--repeats", "1", "--warmup", "0", "--memory-runs", "1", "--decode-tokens", "2", "--out", str(out), "--name", "smoke", "--no-png"]
    assert cli.main(argv) == 0
    assert (out / "smoke.html").is_file()
    assert not (out / "smoke.partial.json").exists()
    return json.loads((out / "smoke.json").read_text())


def test_json_schema(result):
    assert result["schema"] == bench.SCHEMA
    assert result["command"].startswith("python -m glimpse_demo bench")
    assert {"config", "model", "environment", "sizes", "scaling", "targets", "analytic_releases"} <= set(result)
    assert [s["n_visual"] for s in result["sizes"]] == list(TOKENS)
    for s in result["sizes"]:
        assert [m["mode"] for m in s["modes"]] == ["baseline", "glimpse@1", "glimpse@0.25"]
        for m in s["modes"]:
            for key in ("prefill_s", "cpu_prefill_s", "vision_s", "vip_s", "ttft_s", "decode_ms_per_token",
                        "cpu_decode_ms_per_token", "kv_bytes_after_prefill", "kv_tokens_after_prefill", "peak_bytes",
                        "kept_fraction", "analytic"):
                assert key in m, key
            assert len(m["prefill_s_all"]) == 1
            assert m["total_tokens"] == s["n_visual"]  # the picture reached the model unresized
            assert m["decode_tokens"] == 2  # no early stop: every mode decodes the same number of steps
        assert len(s["comparisons"]) == len(KEPT)
    for t in ("prefill_ratio_within_10pct", "overhead_at_most_3pct", "kv_bytes_equal_analytic", "peak_glimpse_at_most_baseline"):
        assert "holds" in result["targets"][t]
    assert set(result["analytic_releases"]) == {"7b", "3b"}
    assert set(result["scaling"]) == {"clock", "baseline", "glimpse@1", "glimpse@0.25"}


def test_kv_ratio_equals_kept_fraction(result):
    for s in result["sizes"]:
        for c in s["comparisons"]:
            assert c["kv_image_ratio_measured"] == c["kept_fraction"]
            assert c["kv_bytes_equal_analytic"]
        for m in s["modes"]:
            assert m["kept_fraction"] == m["kept_fraction_requested"]
            assert m["kv_bytes_after_prefill"] == m["analytic"]["kv_bytes"]
    assert result["targets"]["kv_bytes_equal_analytic"]["holds"] is True


def test_markdown_table_has_a_row_per_mode(result):
    table = bench.markdown_table(result)
    assert len(table.splitlines()) == 2 + len(TOKENS) * (1 + len(KEPT))


def test_fit_exponent():
    assert bench.fit_exponent([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    assert bench.fit_exponent([5], [1]) is None


def test_bad_options_exit_2(capsys):
    assert cli.main(["bench", "--arch", "tiny", "--repeats", "0"]) == 2
    assert "error:" in capsys.readouterr().err


def test_toy_arch_runs_from_its_folder(monkeypatch, tiny_dir):
    """--arch toy loads whatever model sits at defaults.TOY_BASE / TOY_GLIMPSE (here: make-tiny's)."""
    from glimpse_demo import defaults

    monkeypatch.setattr(defaults, "TOY_BASE", tiny_dir / "base")
    monkeypatch.setattr(defaults, "TOY_GLIMPSE", tiny_dir / "glimpse")
    cfg = bench.BenchConfig(arch="toy", tokens=(16,), kept=(0.25,), repeats=1, warmup=0, memory_runs=0, decode_tokens=2)
    res = bench.run_bench(cfg)
    assert res["model"]["arch"] == "toy"
    (c,) = res["sizes"][0]["comparisons"]
    assert c["kv_image_ratio_measured"] == 0.25 and c["kv_bytes_equal_analytic"]


def test_toy_arch_absent_is_a_user_error(monkeypatch, tmp_path, capsys):
    from glimpse_demo import defaults

    monkeypatch.setattr(defaults, "TOY_BASE", tmp_path / "none")
    assert cli.main(["bench", "--arch", "toy", "--out", str(tmp_path)]) == 2
    assert "toy model" in capsys.readouterr().err

"""The CLI contract other tools depend on, driven in-process and once as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from glimpse_demo.cli import main


@pytest.fixture(scope="module")
def scene_path(tmp_path_factory, scene):
    p = tmp_path_factory.mktemp("img") / "scene.png"
    scene.save(p)
    return p


def infer(tiny_dir, scene_path, *extra):
    return [
        "infer", "--base-model", str(tiny_dir / "base"), "--glimpse-modules", str(tiny_dir / "glimpse"),
        "--image", str(scene_path), "--question", "What color is the sign?", "--device", "cpu", *extra,
    ]


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


KEYS = {"answer", "generated_ids", "grid", "keep_mask", "importance", "kept_tokens", "total_tokens", "timings", "memory", "images"}


def test_json_glimpse(tiny_dir, scene_path, capsys, tmp_path):
    overlay = tmp_path / "overlay.png"
    out = run_json(capsys, infer(tiny_dir, scene_path, "--mode", "glimpse", "--json", "--greedy", "--max-new-tokens", "4", "--save-overlay", str(overlay)))
    assert KEYS <= out.keys()
    h, w = out["grid"]
    assert len(out["keep_mask"]) == h and all(len(r) == w for r in out["keep_mask"])
    assert {v for r in out["keep_mask"] for v in r} <= {0, 1}
    assert len(out["importance"]) == h and all(0.0 <= v <= 1.0 for r in out["importance"] for v in r)
    assert out["kept_tokens"] == sum(map(sum, out["keep_mask"])) and out["total_tokens"] == h * w
    assert 1 <= len(out["generated_ids"]) <= 4
    assert out["images"][0]["grid"] == [h, w]
    for k in ("vision_s", "prefill_s", "ttft_s", "decode_tokens_per_s", "total_s"):
        assert out["timings"][k] >= 0
    assert out["memory"]["kv_bytes_after_prefill"] > 0 and out["memory"]["peak_kind"]
    from PIL import Image

    assert Image.open(overlay).size == tuple(out["images"][0]["image_size"])


def test_json_baseline_and_threshold(tiny_dir, scene_path, capsys):
    base = run_json(capsys, infer(tiny_dir, scene_path, "--mode", "baseline", "--json", "--max-new-tokens", "4"))
    assert base["keep_mask"] is None and base["importance"] is None
    assert base["kept_tokens"] == base["total_tokens"]
    keep_all = run_json(capsys, infer(tiny_dir, scene_path, "--mode", "glimpse", "--json", "--max-new-tokens", "4", "--threshold", "0", "--max-remain-ratio", "1"))
    assert keep_all["generated_ids"] == base["generated_ids"]
    capped = run_json(capsys, infer(tiny_dir, scene_path, "--json", "--max-new-tokens", "1", "--threshold", "0", "--max-remain-ratio", "0.25"))
    assert capped["kept_tokens"] == int(0.25 * capped["total_tokens"])


def test_human_summary(tiny_dir, scene_path, capsys):
    assert main(infer(tiny_dir, scene_path, "--max-new-tokens", "2")) == 0
    out = capsys.readouterr().out
    assert "answer:" in out and "visual tokens kept:" in out and "KV cache" in out


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--threshold", "2"], "threshold must be in [0, 1]"),
        (["--max-remain-ratio", "0"], "max_remain_ratio must be in (0, 1]"),
        (["--max-new-tokens", "0"], "max_new_tokens must be >= 1"),
        (["--anchors", "middle"], "unknown anchor"),
        (["--device", "cuda"], "no CUDA device"),
        (["--dtype", "float16", "--load-in-4bit"], "4-bit/8-bit loading needs CUDA"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(tiny_dir, scene_path, capsys, extra, message):
    assert main(infer(tiny_dir, scene_path, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_bad_paths(tiny_dir, scene_path, capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    cases = [
        (["infer", "--base-model", str(tmp_path / "nope"), "--glimpse-modules", str(tiny_dir / "glimpse"), "--image", str(scene_path), "--question", "q"], "no such folder"),
        (infer(tiny_dir, scene_path)[:5] + ["--image", str(tmp_path / "missing.png"), "--question", "q"], "image file not found"),
        (infer(tiny_dir, scene_path)[:5] + ["--image", str(bad), "--question", "q"], "not a readable image"),
        (infer(tiny_dir, scene_path)[:5] + ["--image", str(scene_path), "--question", "   "], "question is empty"),
        (["infer", "--base-model", str(tiny_dir / "base"), "--glimpse-modules", str(tiny_dir / "base"), "--image", str(scene_path), "--question", "q"], "base model folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_real_subprocess_contract(tiny_dir, scene_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "glimpse_demo", *infer(tiny_dir, scene_path, "--json", "--max-new-tokens", "3")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert KEYS <= json.loads(proc.stdout).keys()
    proc = subprocess.run(
        [sys.executable, "-m", "glimpse_demo", *infer(tiny_dir, scene_path, "--threshold", "7")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "threshold" in proc.stderr


def test_make_tiny_command(tmp_path, capsys):
    assert main(["make-tiny", str(tmp_path / "t"), "--patch-size", "8", "--format", "safetensors"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (tmp_path / "t" / "glimpse" / "new_modules_gp.safetensors").is_file()
    assert info["spec"]["patch_size"] == 8


def test_importing_the_engine_does_not_import_gradio():
    code = "import sys, glimpse_demo.engine, glimpse_demo.cli, glimpse_demo.viz; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr

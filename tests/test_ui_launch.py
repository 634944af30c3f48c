"""Launch surface: app.py options and environment variables, a clean exit on a bad model, the Space
front matter and the Dockerfile, checked for consistency with the requirements (docker cannot run here)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_app():
    spec = importlib.util.spec_from_file_location("glimpse_app", ROOT / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~\[ ]", line, maxsplit=1)[0].lower()
            pins[name] = line
    return pins


@pytest.mark.parametrize("argv, env, expect", [
    ([], {}, dict(base_model=None, glimpse_modules=None, device="auto", host="127.0.0.1", port=7860,
                  share=False, load_in_4bit=False)),
    (["--base-model", "Qwen/Qwen2.5-VL-3B-Instruct", "--glimpse-modules", "ashun989/GlimpsePrune_Qwen2.5-VL-3B-Instruct",
      "--device", "cuda", "--dtype", "bfloat16", "--load-in-4bit", "--host", "0.0.0.0", "--port", "8000", "--share"], {},
     dict(base_model="Qwen/Qwen2.5-VL-3B-Instruct", device="cuda", dtype="bfloat16", load_in_4bit=True,
          host="0.0.0.0", port=8000, share=True)),
    ([], {"GLIMPSE_BASE_MODEL": "/models/base", "GLIMPSE_MODULES": "/models/gp", "GLIMPSE_DEVICE": "cpu",
          "GLIMPSE_DTYPE": "float32", "GLIMPSE_LOAD_IN_4BIT": "1", "GRADIO_SERVER_NAME": "0.0.0.0",
          "GRADIO_SERVER_PORT": "7861", "GLIMPSE_SHARE": "true"},
     dict(base_model="/models/base", glimpse_modules="/models/gp", device="cpu", dtype="float32",
          load_in_4bit=True, host="0.0.0.0", port=7861, share=True)),
    (["--port", "9000"], {"GRADIO_SERVER_PORT": "7861"}, dict(port=9000)),  # the flag wins
])
def test_options_and_environment(argv, env, expect):
    args = load_app().parse_args(argv, env)
    assert {k: getattr(args, k) for k in expect} == expect


def test_importing_app_loads_nothing_and_help_is_instant():
    out = subprocess.run([sys.executable, str(ROOT / "app.py"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--glimpse-modules" in out.stdout


def test_a_bad_model_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert load_app().main(["--base-model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def front_matter() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "README must open with the Space front matter"
    block = text.split("---\n", 2)[1]
    return {k.strip(): v.strip().strip('"') for k, v in (line.split(":", 1) for line in block.splitlines() if ":" in line)}


def test_readme_front_matter_is_a_gradio_space_on_the_pinned_gradio():
    fm = front_matter()
    assert fm["sdk"] == "gradio" and fm["app_file"] == "app.py" and (ROOT / fm["app_file"]).is_file()
    assert requirement_pins()["gradio"] == f"gradio=={fm['sdk_version']}"
    readme = (ROOT / "README.md").read_text()
    assert "python app.py" in readme.split("## ")[0] and "python -m pytest -q" in readme.split("## ")[0]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_installs_the_requirements_and_serves_7860_as_non_root():
    steps = dockerfile()
    ops = [op for op, _ in steps]
    args = {op: rest for op, rest in steps}
    base = args["FROM"]
    py = front_matter()["python_version"]
    assert base.startswith(f"python:{py}"), f"the image's Python ({base}) differs from the Space's ({py})"
    runs = [rest for op, rest in steps if op == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert installs == ["pip install -r requirements.txt"], "install the requirements file only, nothing unpinned"
    copy_req = steps.index(("COPY", "requirements.txt ."))
    install = steps.index(("RUN", "pip install -r requirements.txt"))
    copy_all = next(i for i, (op, rest) in enumerate(steps) if op == "COPY" and rest.endswith(". ."))
    assert copy_req < install < copy_all  # dependencies cached apart from the code
    user = args["USER"]
    assert user not in ("root", "0") and ops.index("USER") < ops.index("CMD")
    assert any(r.startswith("useradd") and user in r for r in runs)
    assert args["EXPOSE"] == "7860"
    cmd = shlex.split(args["CMD"].strip("[]").replace(",", " "))
    assert cmd[:2] == ["python", "app.py"] and cmd[cmd.index("--port") + 1] == "7860"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored

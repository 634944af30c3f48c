"""GlimpsePrune demo: ``python app.py`` serves the built-in model on http://127.0.0.1:7860, offline.

Options (each also read from an environment variable, for a Space or a container):
  --base-model ID_OR_DIR      GLIMPSE_BASE_MODEL     Qwen2.5-VL hub id or folder (default: built-in)
  --glimpse-modules ID_OR_DIR GLIMPSE_MODULES        GlimpsePrune modules hub id or folder
  --device cpu|cuda|auto      GLIMPSE_DEVICE
  --dtype float32|bfloat16|float16  GLIMPSE_DTYPE
  --load-in-4bit              GLIMPSE_LOAD_IN_4BIT=1
  --host HOST                 GRADIO_SERVER_NAME     (default 127.0.0.1; a Space sets 0.0.0.0)
  --port PORT                 GRADIO_SERVER_PORT     (default 7860)
  --share                     GLIMPSE_SHARE=1
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

TRUE = {"1", "true", "yes", "on"}


def parse_args(argv: list[str] | None = None, env: dict | None = None) -> argparse.Namespace:
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(description="GlimpsePrune demo (Gradio)")
    p.add_argument("--base-model", default=env.get("GLIMPSE_BASE_MODEL"))
    p.add_argument("--glimpse-modules", default=env.get("GLIMPSE_MODULES"))
    p.add_argument("--device", default=env.get("GLIMPSE_DEVICE", "auto"), choices=["cpu", "cuda", "auto"])
    p.add_argument("--dtype", default=env.get("GLIMPSE_DTYPE"), choices=["float32", "bfloat16", "float16"])
    p.add_argument("--load-in-4bit", action="store_true", default=env.get("GLIMPSE_LOAD_IN_4BIT", "").lower() in TRUE)
    p.add_argument("--host", default=env.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--share", action="store_true", default=env.get("GLIMPSE_SHARE", "").lower() in TRUE)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from glimpse_demo.errors import GlimpseDemoError
    from glimpse_demo.ui import build_demo, launch
    from glimpse_demo.ui_run import load_engine, warm_up

    try:  # the model is loaded once, here, and shared by every request
        engine, info = load_engine(args.base_model, args.glimpse_modules, args.device, args.dtype, args.load_in_4bit)
    except GlimpseDemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    warm_up(engine)
    launch(build_demo(engine, info), args.host, args.port, args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())

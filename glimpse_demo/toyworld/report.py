"""Write assets/toy/EVAL.md (table, learning curves, training time) and the compact logs beside it."""

from __future__ import annotations

import json
from pathlib import Path

from .evaluate import table


def curve_table(curve: list[dict], every: int, keys: tuple[str, ...]) -> str:
    rows = [r for r in curve if r["step"] % every == 0] or curve
    if curve and rows[-1] is not curve[-1]:
        rows.append(curve[-1])
    head = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys)
    lines = [head]
    for r in rows:
        vals = []
        for k in keys:
            v = r.get(k, r.get("acc_by_type", {}).get(k, ""))
            vals.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def write_report(dest: str | Path, summary: dict, base_curve: list[dict], glimpse_curve: list[dict],
                 calibration: dict | None, notes: str) -> Path:
    dest = Path(dest)
    (dest / "train_base_curve.json").write_text(json.dumps(base_curve))
    (dest / "train_glimpse_curve.json").write_text(json.dumps(glimpse_curve))
    (dest / "eval.json").write_text(json.dumps(summary, indent=1))
    types = ("color", "shape", "exist", "count", "position", "exist_color", "count_color")
    parts = [
        "# The toy model: evaluation and training log",
        notes,
        "## Held-out evaluation (`python -m glimpse_demo.toyworld evaluate`)",
        table(summary),
        "## Base training curve (training batches, 320-sample windows)",
        curve_table(base_curve, 100, ("step", "samples", "minutes", "lr", "max_objects", "lm", "aux", "attn", "acc") + types),
        "## GlimpsePrune modules training curve (per step, batch 8)",
        curve_table(glimpse_curve, 50, ("step", "minutes", "loss", "dice", "bce", "lm", "acc", "kept", "recall")),
    ]
    if calibration:
        parts += ["## Threshold calibration (its own seed range)", "```json\n" + json.dumps(calibration) + "\n```"]
    path = dest / "EVAL.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path

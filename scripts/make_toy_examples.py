"""Write the toy-world example scenes the app offers (examples/toy/), reproducibly from seeds.

Seeds come from a range used neither for training (0 up) nor for the held-out evaluation
(10,000,000 up), and are not chosen by whether the model answers them right.
"""

from __future__ import annotations

import json
from pathlib import Path

from glimpse_demo.toyworld.world import sample

OUT = Path(__file__).resolve().parent.parent / "examples" / "toy"
SEED_BASE = 20_000_000
# (question type, objects per scene): what the model masters, what it half-knows, what it fails
PLAN = [("exist_color", (3, 5)), ("color", (1, 1)), ("count_color", (3, 5)), ("color", (3, 5)), ("exist", (2, 4)), ("shape", (2, 4))]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    index = []
    for i, (qtype, n_objects) in enumerate(PLAN):
        s = sample(SEED_BASE + i, qtypes=(qtype,), n_objects=n_objects)
        name = f"toy_{i}_{qtype}.png"
        s.scene.render().save(OUT / name, optimize=True)
        index.append({"file": name, "question": s.question.text, "answer": s.question.answer, "qtype": qtype, "seed": s.seed})
    (OUT / "examples.json").write_text(json.dumps(index, indent=2) + "\n")
    print(json.dumps(index, indent=2))


if __name__ == "__main__":
    main()

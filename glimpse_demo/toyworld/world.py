"""The toy world: seeded scenes of coloured shapes with exact masks, and one-word questions about them.

A scene is a canvas (448..1344 px a side, plain or textured background) holding a few shapes that
never overlap. Every question names the objects it is about (``targets``), which is what the
GlimpsePrune VIP is trained to keep. Everything is a pure function of the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (150, 60, 190),
    "orange": (245, 130, 20),
}
COLOR_NAMES = tuple(COLORS)
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
NUMBERS = ("0", "1", "2", "3", "4")
QTYPES = ("color", "shape", "exist", "count", "position", "exist_color", "count_color")


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 as fractions of the canvas

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def quadrant(self) -> str:
        cx, cy = self.center
        return QUADRANTS[(2 if cy >= 0.5 else 0) + (1 if cx >= 0.5 else 0)]


@dataclass
class Scene:
    width: int
    height: int
    objects: list[Obj]
    background: dict = field(default_factory=dict)
    seed: int = 0

    def render(self) -> Image.Image:
        return render(self)[0]


@dataclass(frozen=True)
class Question:
    qtype: str
    text: str
    answer: str
    targets: tuple[int, ...]  # indices into scene.objects the question is about
    keywords: tuple[str, ...]  # the words of the question that name what to look for


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)]
    if shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else r * 0.45
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    if shape == "cross":
        t = r * 0.36
        return [(cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t), (cx + r, cy + t), (cx + t, cy + t),
                (cx + t, cy + r), (cx - t, cy + r), (cx - t, cy + t), (cx - r, cy + t), (cx - r, cy - t), (cx - t, cy - t)]
    return None


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    else:
        draw.polygon(_polygon(shape, cx, cy, r), fill=fill)


def _background(bg: dict, w: int, h: int, canvas: tuple[int, int]) -> Image.Image:
    """The background at ``w x h`` pixels of a ``canvas`` (w, h) scene; the pattern scales with it."""
    base = np.array(bg["color"], dtype=np.float32)
    f = w / canvas[0]
    if bg["kind"] == "plain":
        arr = np.broadcast_to(base, (h, w, 3))
    else:
        rng = np.random.default_rng(bg["seed"])
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        if bg["kind"] == "stripes":
            a = bg["angle"]
            t = np.sin((xx * math.cos(a) + yy * math.sin(a)) / (bg["period"] * f) * 2 * math.pi)
        elif bg["kind"] == "checker":
            p = bg["period"] * f
            t = ((xx // p + yy // p) % 2) * 2 - 1
        else:  # noise, smooth enough to look like paper
            small = rng.normal(size=(max(2, canvas[1] // 24), max(2, canvas[0] // 24))).astype(np.float32)
            t = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))
            t = t / (np.abs(t).max() + 1e-6)
        arr = base + t[..., None] * bg["contrast"]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def render(scene: Scene, size: tuple[int, int] | None = None) -> tuple[Image.Image, np.ndarray]:
    """(RGB image, label map ``[H, W]`` with 0 = background and i + 1 = object i), drawn at the
    canvas size or at ``size`` (w, h) (the trainer draws small, straight at the model's resolution)."""
    w, h = size or (scene.width, scene.height)
    img = _background(scene.background, w, h, (scene.width, scene.height))
    labels = Image.new("L", (w, h), 0)
    d_img, d_lab = ImageDraw.Draw(img), ImageDraw.Draw(labels)
    for i, o in enumerate(scene.objects):
        x1, y1, x2, y2 = o.box
        cx, cy = (x1 + x2) / 2 * w, (y1 + y2) / 2 * h
        r = (x2 - x1) * w / 2
        _draw(d_img, o.shape, cx, cy, r, COLORS[o.color])
        _draw(d_lab, o.shape, cx, cy, r, i + 1)
    return img, np.asarray(labels)


def make_scene(rng: np.random.Generator, n_objects: int, size: tuple[int, int] | None = None) -> Scene:
    """A scene with ``n_objects`` non-overlapping shapes; ``size`` (w, h) or a random canvas."""
    if size is None:
        long = int(rng.integers(448, 1345))
        aspect = float(rng.uniform(1.0, 2.5))
        short = max(448, int(long / aspect))
        size = (long, short) if rng.random() < 0.6 else (short, long)
    w, h = size
    unit = math.sqrt(w * h)
    gray = rng.uniform(150, 235) if rng.random() < 0.7 else rng.uniform(25, 80)
    tint = rng.uniform(-12, 12, size=3)
    kind = str(rng.choice(["plain", "plain", "stripes", "checker", "noise"]))
    bg = {"kind": kind, "color": [float(gray + t) for t in tint], "seed": int(rng.integers(1 << 30)),
          "angle": float(rng.uniform(0, math.pi)), "period": float(rng.uniform(0.02, 0.06) * unit),
          "contrast": float(rng.uniform(6, 18))}
    objects: list[Obj] = []
    placed: list[tuple[float, float, float]] = []
    tries = 0
    while len(objects) < n_objects and tries < 500:
        tries += 1
        r = float(rng.uniform(0.045, 0.085) * unit)  # radius in px: small objects in big canvases
        cx, cy = float(rng.uniform(r + 4, w - r - 4)), float(rng.uniform(r + 4, h - r - 4))
        # keep centres off the mid-lines so "top left" etc. is never ambiguous
        if abs(cx - w / 2) < 0.04 * w + r * 0.2 or abs(cy - h / 2) < 0.04 * h + r * 0.2:
            continue
        if any(math.hypot(cx - px, cy - py) < (r + pr) * 1.25 + 8 for px, py, pr in placed):
            continue
        placed.append((cx, cy, r))
        shape, color = str(rng.choice(SHAPES)), str(rng.choice(COLOR_NAMES))
        objects.append(Obj(shape, color, ((cx - r) / w, (cy - r) / h, (cx + r) / w, (cy + r) / h)))
    return Scene(w, h, objects, bg)


def _unique(scene: Scene, attr: str) -> list[int]:
    vals = [getattr(o, attr) for o in scene.objects]
    return [i for i, v in enumerate(vals) if vals.count(v) == 1]


def make_question(rng: np.random.Generator, scene: Scene, qtype: str) -> Question | None:
    """One question of ``qtype`` about ``scene``, or None when the scene cannot support it."""
    objs = scene.objects
    if qtype in ("color", "position"):
        cand = _unique(scene, "shape")
        if not cand:
            return None
        i = int(rng.choice(cand))
        o = objs[i]
        if qtype == "color":
            return Question("color", f"what color is the {o.shape} ?", o.color, (i,), (o.shape,))
        return Question("position", f"where is the {o.shape} ?", o.quadrant, (i,), (o.shape,))
    if qtype == "shape":
        cand = _unique(scene, "color")
        if not cand:
            return None
        i = int(rng.choice(cand))
        return Question("shape", f"what shape is the {objs[i].color} object ?", objs[i].shape, (i,), (objs[i].color,))
    if qtype == "exist":
        if objs and rng.random() < 0.5:
            o = objs[int(rng.integers(len(objs)))]
            shape, color = o.shape, o.color
        else:  # a near miss: a shape or colour present in the scene, the pair absent
            shape, color = str(rng.choice(SHAPES)), str(rng.choice(COLOR_NAMES))
            if objs and rng.random() < 0.7:
                o = objs[int(rng.integers(len(objs)))]
                shape = o.shape if rng.random() < 0.5 else shape
                color = o.color if shape != o.shape else color
        hits = tuple(i for i, o in enumerate(objs) if o.shape == shape and o.color == color)
        looked = hits or tuple(i for i, o in enumerate(objs) if o.shape == shape)
        return Question("exist", f"is there a {color} {shape} ?", "yes" if hits else "no", looked, (color, shape))
    if qtype == "count":
        present = [o.shape for o in objs]
        shape = str(rng.choice(present)) if present and rng.random() < 0.85 else str(rng.choice(SHAPES))
        hits = tuple(i for i, o in enumerate(objs) if o.shape == shape)
        if len(hits) >= len(NUMBERS):
            return None
        return Question("count", f"how many {shape} are there ?", NUMBERS[len(hits)], hits, (shape,))
    if qtype in ("exist_color", "count_color"):
        present = [o.color for o in objs]
        color = str(rng.choice(present)) if present and rng.random() < 0.6 else str(rng.choice(COLOR_NAMES))
        hits = tuple(i for i, o in enumerate(objs) if o.color == color)
        if len(hits) >= len(NUMBERS):
            return None
        if qtype == "exist_color":
            return Question(qtype, f"is there a {color} object ?", "yes" if hits else "no", hits, (color,))
        return Question(qtype, f"how many are {color} ?", NUMBERS[len(hits)], hits, (color,))
    raise ValueError(f"unknown question type {qtype!r}")


@dataclass
class Sample:
    scene: Scene
    question: Question
    seed: int


def sample(seed: int, qtypes: tuple[str, ...] = QTYPES, n_objects: tuple[int, int] = (1, 5),
           size: tuple[int, int] | None = None, weights: tuple[float, ...] | None = None) -> Sample:
    """The sample of ``seed``: a scene with n in [lo, hi] objects and one question (deterministic);
    ``weights`` (one per qtype) skews the question mix."""
    rng = np.random.default_rng(seed)
    p = None if weights is None else np.asarray(weights, dtype=np.float64) / sum(weights)
    for _ in range(50):
        n = int(rng.integers(n_objects[0], n_objects[1] + 1))
        qtype = str(rng.choice(qtypes)) if p is None else str(rng.choice(qtypes, p=p))
        if qtype == "count":
            n = max(n, 2) if n_objects[1] >= 2 else n
        scene = make_scene(rng, n, size)
        scene.seed = seed
        q = make_question(rng, scene, qtype)
        if q is not None:
            return Sample(scene, q, seed)
    raise RuntimeError(f"seed {seed}: no scene fits {qtypes}")


# Splits: training seeds count up from 0; held-out seeds live in another range and are never trained on.
HELDOUT_BASE = 10_000_000


def heldout(n: int, qtypes: tuple[str, ...] = QTYPES, n_objects: tuple[int, int] = (1, 5)) -> list[Sample]:
    return [sample(HELDOUT_BASE + i, qtypes, n_objects) for i in range(n)]

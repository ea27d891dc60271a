"""Pictures of the sample dataset: a cartoon laparoscopic cholecystectomy drawn with numpy.

The phase sets the scene (tissue colours and anatomy: trocar ports, the triangle with duct and
artery, a duct with clips, the liver bed, a specimen bag, fluid and bleeding spots, a bag leaving
through a port); the step sets the instrument (shape and colour); the task sets the motion
(insert, retract, hold, dissect = short oscillation, coagulate = flashes, clip = jaws closing,
cut = fast snips, irrigate = a stream, aspirate = sweeping, pack = carrying tissue to the bag).
Per-video colour shifts, camera shake, lighting drift and sensor noise keep it from being trivial.
Frames are float32 [S, S, 3] in [0, 1] until ``to_uint8``.
"""
from __future__ import annotations

import math

import numpy as np

TOOL_STYLE = {  # shaft colour, shaft width, tip colour
    "Grasper": ((0.55, 0.58, 0.60), 6, (0.30, 0.42, 0.32)),
    "Bipolar": ((0.22, 0.32, 0.78), 6, (0.95, 0.95, 0.95)),
    "Hook": ((0.85, 0.85, 0.88), 4, (0.98, 0.98, 0.70)),
    "Scissors": ((0.12, 0.12, 0.14), 6, (0.88, 0.70, 0.25)),
    "Clipper": ((0.10, 0.10, 0.10), 9, (0.75, 0.75, 0.80)),
    "Irrigator": ((0.95, 0.95, 0.90), 4, (0.20, 0.20, 0.20)),
    "SpecimenBag": ((0.45, 0.45, 0.48), 4, (0.82, 0.88, 0.98)),
}


class Canvas:
    """Drawing helpers on a float32 [S, S, 3] image; every shape is clipped to its bounding box."""

    def __init__(self, size: int):
        self.size = size
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def _box(self, x0, y0, x1, y1):
        s = self.size
        a, b = max(0, int(math.floor(min(x0, x1)))), min(s, int(math.ceil(max(x0, x1))) + 1)
        c, d = max(0, int(math.floor(min(y0, y1)))), min(s, int(math.ceil(max(y0, y1))) + 1)
        return (slice(c, d), slice(a, b)) if a < b and c < d else None

    def ellipse(self, img, cx, cy, rx, ry, color, alpha=1.0, soft=1.5):
        box = self._box(cx - rx - soft, cy - ry - soft, cx + rx + soft, cy + ry + soft)
        if box is None:
            return
        r = np.sqrt(((self.xx[box] - cx) / rx) ** 2 + ((self.yy[box] - cy) / ry) ** 2)
        m = np.clip((1 - r) * min(rx, ry) / soft, 0, 1)[..., None] * alpha
        img[box] = img[box] * (1 - m) + np.asarray(color, np.float32) * m

    def segment(self, img, x0, y0, x1, y1, width, color, alpha=1.0):
        w = width / 2 + 1
        box = self._box(min(x0, x1) - w, min(y0, y1) - w, max(x0, x1) + w, max(y0, y1) + w)
        if box is None:
            return
        px, py = self.xx[box] - x0, self.yy[box] - y0
        dx, dy = x1 - x0, y1 - y0
        t = np.clip((px * dx + py * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
        dist = np.sqrt((px - t * dx) ** 2 + (py - t * dy) ** 2)
        m = np.clip(width / 2 + 0.5 - dist, 0, 1)[..., None] * alpha
        img[box] = img[box] * (1 - m) + np.asarray(color, np.float32) * m

    def polygon_tri(self, img, pts, color, alpha=1.0):
        (ax, ay), (bx, by), (cx, cy) = pts
        box = self._box(min(ax, bx, cx), min(ay, by, cy), max(ax, bx, cx), max(ay, by, cy))
        if box is None:
            return
        x, y = self.xx[box], self.yy[box]
        d1 = (x - bx) * (ay - by) - (ax - bx) * (y - by)
        d2 = (x - cx) * (by - cy) - (bx - cx) * (y - cy)
        d3 = (x - ax) * (cy - ay) - (cx - ax) * (y - ay)
        inside = ~(((d1 < 0) | (d2 < 0) | (d3 < 0)) & ((d1 > 0) | (d2 > 0) | (d3 > 0)))
        m = inside[..., None].astype(np.float32) * alpha
        img[box] = img[box] * (1 - m) + np.asarray(color, np.float32) * m


def _texture(rng: np.random.Generator, size: int, waves: int = 6) -> np.ndarray:
    """Smooth tissue texture in about [-1, 1]: a sum of random plane waves, [S, S]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.zeros((size, size), np.float32)
    for _ in range(waves):
        fx, fy = rng.uniform(-6, 6, 2)
        out += np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    return out / math.sqrt(waves)


class VideoStyle:
    """Per-video random appearance: colour shift, texture, layout anchors, noise bank, vignette."""

    def __init__(self, rng: np.random.Generator, size: int):
        s = size
        self.size = s
        self.canvas = Canvas(s)
        self.shift = rng.normal(0, 0.05, 3).astype(np.float32)
        self.texture = _texture(rng, s)[..., None]
        self.flip = bool(rng.random() < 0.5)  # mirror the anatomy left/right
        self.anchor = np.array([s * rng.uniform(0.42, 0.58), s * rng.uniform(0.42, 0.58)], np.float32)
        self.ports = [(s * rng.uniform(0.1, 0.9), s * rng.uniform(0.05, 0.2)) for _ in range(3)]
        self.port_exit = (s * rng.uniform(0.7, 0.9), s * rng.uniform(0.08, 0.2))
        self.bag_pos = (s * rng.uniform(0.55, 0.75), s * rng.uniform(0.55, 0.75))
        self.spots = [(s * rng.uniform(0.2, 0.8), s * rng.uniform(0.3, 0.85), rng.uniform(4, 10)) for _ in range(5)]
        self.noise = [rng.normal(0, 0.025, (s, s, 3)).astype(np.float32) for _ in range(6)]
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
        self.vignette = (1 - rng.uniform(0.8, 1.4) * (xx ** 2 + yy ** 2))[..., None].astype(np.float32)


def scene_point(style: VideoStyle, x: float, y: float) -> tuple[float, float]:
    """A point given in un-mirrored scene coordinates, where it is drawn (scenes may be mirrored)."""
    return (style.size - 1 - x, y) if style.flip else (x, y)


def _bg(style: VideoStyle, base, amp=0.07) -> np.ndarray:
    img = np.empty((style.size, style.size, 3), np.float32)
    img[:] = np.asarray(base, np.float32) + style.shift
    img += style.texture * amp
    return img


def draw_scene(style: VideoStyle, phase: str, progress: float) -> np.ndarray:
    """The background of ``phase`` at ``progress`` in [0, 1] through it, float32 [S, S, 3]."""
    s, c = style.size, style.canvas
    ax, ay = style.anchor
    if phase == "Preparation":
        img = _bg(style, (0.82, 0.52, 0.52), 0.06)
        for px, py in style.ports:
            c.ellipse(img, px, py, 11, 8, (0.08, 0.06, 0.06))
            c.ellipse(img, px, py, 6, 4, (0.6, 0.6, 0.62))
        c.ellipse(img, ax, ay + 0.25 * s, 0.35 * s, 0.12 * s, (0.72, 0.35, 0.32), 0.8, 6)
    elif phase == "CalotTriangleDissection":
        img = _bg(style, (0.80, 0.68, 0.40), 0.08)
        c.ellipse(img, 0.5 * s, 0.08 * s, 0.6 * s, 0.2 * s, (0.50, 0.16, 0.14), 1, 4)  # liver
        c.ellipse(img, 0.22 * s, 0.4 * s, 0.22 * s, 0.12 * s, (0.42, 0.58, 0.30), 1, 4)  # gallbladder
        c.polygon_tri(img, [(ax - 28, ay + 22), (ax + 28, ay + 22), (ax, ay - 26)], (0.93, 0.83, 0.62), 0.8)
        c.segment(img, ax - 30, ay + 24, ax + 0.45 * s, ay + 30, 6, (0.92, 0.90, 0.78))  # cystic duct
        c.segment(img, ax - 22, ay - 10, ax + 0.45 * s, ay - 18, 3, (0.78, 0.20, 0.22))  # cystic artery
    elif phase == "ClippingCutting":
        img = _bg(style, (0.78, 0.58, 0.48), 0.07)
        c.segment(img, 0, ay + 8, s, ay - 4, 12, (0.93, 0.90, 0.80))  # duct
        c.segment(img, 0, ay - 22, s, ay - 30, 5, (0.75, 0.18, 0.20))  # artery
        for k in range(1 + int(progress * 4)):
            x = 0.3 * s + 9 * k
            c.segment(img, x, ay - 6, x, ay + 18, 3, (0.85, 0.85, 0.9))
    elif phase == "GallbladderDissection":
        img = _bg(style, (0.52, 0.17, 0.15), 0.06)
        c.ellipse(img, ax + 10, ay - 0.1 * s, 0.3 * s, 0.16 * s, (0.43, 0.60, 0.30), 1, 4)
        c.segment(img, ax - 0.3 * s, ay + 0.08 * s - 10 * progress, ax + 0.3 * s, ay + 0.05 * s - 10 * progress,
                  3, (0.95, 0.92, 0.85), 0.8)  # dissection plane
    elif phase == "GallbladderPackaging":
        img = _bg(style, (0.55, 0.20, 0.17), 0.06)
        bx, by = style.bag_pos
        c.ellipse(img, bx, by, 26, 20, (0.84, 0.88, 0.97), 0.9, 3)
        c.ellipse(img, bx, by - 12, 18, 6, (0.25, 0.25, 0.35), 0.9)  # bag opening
        c.ellipse(img, 0.3 * s, 0.35 * s, 20 * (1 - 0.5 * progress) + 4, 12, (0.43, 0.60, 0.30), 1, 3)
    elif phase == "CleaningCoagulation":
        img = _bg(style, (0.50, 0.16, 0.14), 0.06)
        for k, (x, y, r) in enumerate(style.spots):
            if k % 2:
                c.ellipse(img, x, y, r, r * 0.8, (0.28, 0.02, 0.03), 0.95)  # bleeding spot
            else:
                c.ellipse(img, x, y, r * 1.8, r, (0.70, 0.78, 0.90), 0.7, 3)  # fluid pool
    elif phase == "GallbladderRetraction":
        img = _bg(style, (0.62, 0.30, 0.28), 0.06)
        px, py = style.port_exit
        c.ellipse(img, px, py, 16, 12, (0.05, 0.04, 0.04))
        bx, by = style.bag_pos
        x, y = bx + (px - bx) * progress, by + (py - by) * progress
        c.ellipse(img, x, y, 22 * (1 - 0.5 * progress), 16 * (1 - 0.5 * progress), (0.84, 0.88, 0.97), 0.9, 3)
    else:
        raise ValueError(f"unknown phase {phase!r}")
    return img[:, ::-1].copy() if style.flip else img


def draw_tool(style: VideoStyle, img: np.ndarray, tool: str, entry, tip, jaw: float = 0.5,
              flash: float = 0.0, stream: float | None = None, carry=None) -> None:
    """Draw ``tool`` from ``entry`` (on the border) to ``tip``, in place.

    Args:
        jaw: jaw opening in [0, 1] (graspers, scissors, clipper, bipolar).
        flash: energy flash strength in [0, 1] (coagulation).
        stream: phase of an irrigation stream (None = off).
        carry: colour of tissue held at the tip (retract / pack), or None.
    """
    c = style.canvas
    shaft, width, tipc = TOOL_STYLE[tool]
    (ex, ey), (tx, ty) = entry, tip
    dx, dy = tx - ex, ty - ey
    n = math.hypot(dx, dy) or 1.0
    ux, uy = dx / n, dy / n
    nx, ny = -uy, ux
    if carry is not None:
        c.ellipse(img, tx + 6 * ux, ty + 6 * uy, 9, 7, carry, 0.95)
    c.segment(img, ex, ey, tx, ty, width, shaft)
    c.segment(img, ex, ey, tx, ty, max(1, width // 3), tuple(min(1, v + 0.25) for v in shaft), 0.5)  # highlight
    if tool in ("Grasper", "Bipolar", "Clipper", "Scissors"):
        length = {"Grasper": 11, "Bipolar": 12, "Clipper": 10, "Scissors": 13}[tool]
        spread = (0.15 + 0.6 * jaw)
        for sgn in (-1, 1):
            jx = tx + length * (ux + sgn * spread * nx)
            jy = ty + length * (uy + sgn * spread * ny)
            c.segment(img, tx, ty, jx, jy, 3 if tool != "Clipper" else 4, tipc)
    elif tool == "Hook":
        c.segment(img, tx, ty, tx + 8 * ux, ty + 8 * uy, 3, tipc)
        c.segment(img, tx + 8 * ux, ty + 8 * uy, tx + 8 * ux + 7 * nx, ty + 8 * uy + 7 * ny, 3, tipc)
    elif tool == "Irrigator":
        c.ellipse(img, tx, ty, 3, 3, tipc)
    elif tool == "SpecimenBag":
        c.ellipse(img, tx + 10 * ux, ty + 10 * uy, 14, 11, tipc, 0.9, 3)
        c.ellipse(img, tx + 4 * ux, ty + 4 * uy, 9, 3, (0.25, 0.25, 0.35), 0.8)
    if flash > 0:
        c.ellipse(img, tx + 9 * ux, ty + 9 * uy, 7 + 5 * flash, 7 + 5 * flash, (1.0, 0.95, 0.7), 0.9 * flash, 4)
        c.ellipse(img, tx + 6 * ux - 8 * nx, ty + 6 * uy - 8 * ny, 12, 9, (0.85, 0.85, 0.85), 0.35 * flash, 5)
    if stream is not None:
        for k in range(6):
            d = 12 + ((k * 9 + stream * 9) % 54)
            c.ellipse(img, tx + d * ux, ty + d * uy, 2.5, 2.5, (0.75, 0.88, 1.0), 0.85, 1)


def finish(style: VideoStyle, img: np.ndarray, brightness: float, shake: tuple[int, int], noise_id: int) -> np.ndarray:
    """Lighting, camera shake and sensor noise; -> uint8 [S, S, 3]."""
    img *= style.vignette * brightness
    img += style.noise[noise_id % len(style.noise)]
    img = np.roll(img, shake, axis=(0, 1))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)

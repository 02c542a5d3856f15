"""Synthetic Chinese licence plates and gate-camera scenes, for tests, the benchmark and demos.

Renders a 440x140 mm blue plate (white text, 7 characters) or a 480x140 mm green gradient
new-energy plate (black text, 8 characters) with a CJK font from a Debian package
(``fonts-wqy-microhei`` or ``fonts-noto-cjk``), then places it in a frame with perspective, blur,
sensor noise and low light. Deterministic for a given ``random.Random``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vision.images import BgrImage
from vision.plate_text import PROVINCES, normalize_plate

__all__ = [
    "FONT_CANDIDATES",
    "FontNotFoundError",
    "SceneParams",
    "find_cjk_font",
    "random_plate",
    "render_plate",
    "render_scene",
]

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
)
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
PLATE_ALNUM = PLATE_LETTERS + "0123456789"
PX_PER_MM = 1.0  # render at 1 px/mm, then scale into the scene


class FontNotFoundError(RuntimeError):
    """No CJK font is installed. Attributes: ``searched`` — the paths tried."""

    def __init__(self, searched: tuple[str, ...]) -> None:
        super().__init__(
            "no CJK font found; install one: apt-get install fonts-wqy-microhei (searched " + ", ".join(searched) + ")"
        )
        self.searched = searched


def find_cjk_font() -> Path:
    """Path of an installed CJK font, or :class:`FontNotFoundError`."""
    for cand in FONT_CANDIDATES:
        if Path(cand).is_file():
            return Path(cand)
    raise FontNotFoundError(FONT_CANDIDATES)


def random_plate(rng: random.Random, green: bool = False) -> str:
    """A random valid plate; green plates follow the small-car new-energy D/F rule."""
    prov = rng.choice(PROVINCES)
    city = rng.choice(PLATE_LETTERS)
    if green:
        tail = rng.choice("DF") + "".join(rng.choice(PLATE_ALNUM) for _ in range(5))
    else:
        tail = "".join(rng.choice(PLATE_ALNUM) for _ in range(5))
    return prov + city + tail


def render_plate(plate: str, font_path: Path | None = None) -> BgrImage:
    """Render a plate face-on at 1 px/mm (blue 440x140 or green 480x140), BGR."""
    text = normalize_plate(plate)
    green = len(text) == 8
    w, h = (480, 140) if green else (440, 140)
    font = ImageFont.truetype(str(font_path or find_cjk_font()), 92)
    if green:
        top, bottom = np.array([245, 250, 245], float), np.array([80, 200, 110], float)
        ramp = np.linspace(0.0, 1.0, h)[:, None, None]
        arr = (top * (1 - ramp) + bottom * ramp).repeat(w, axis=1).astype(np.uint8)
        img = Image.fromarray(arr, "RGB")
        fg: tuple[int, int, int] = (10, 10, 10)
    else:
        img = Image.new("RGB", (w, h), (16, 62, 190))
        fg = (245, 245, 245)
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle((4, 4, w - 5, h - 5), radius=10, outline=fg, width=3)
    # Layout: two characters, a separator dot, then the rest, evenly spread.
    chars = list(text)
    slots = [*chars[:2], "·", *chars[2:]]
    margin = 16
    slot_w = (w - 2 * margin) / (len(slots) - 0.6)
    x = float(margin)
    for ch in slots:
        cw = slot_w * (0.4 if ch == "·" else 1.0)
        if ch == "·":
            cy = h / 2
            draw.ellipse((x + cw / 2 - 5, cy - 5, x + cw / 2 + 5, cy + 5), fill=fg)
        else:
            bbox = draw.textbbox((0, 0), ch, font=font)
            tw, th = bbox[2] - bbox[0], bbox[3] - bbox[1]
            glyph = Image.new("L", (int(tw) + 4, int(th) + 4), 0)
            ImageDraw.Draw(glyph).text((2 - bbox[0], 2 - bbox[1]), ch, font=font, fill=255)
            target_h = int(h * 0.64)
            target_w = int(min(cw * 0.86, tw * target_h / max(th, 1)))
            glyph = glyph.resize((max(target_w, 1), target_h), Image.Resampling.LANCZOS)
            img.paste(Image.new("RGB", glyph.size, fg), (int(x + (cw - target_w) / 2), int(h * 0.18)), glyph)
        x += cw
    rgb = np.asarray(img, dtype=np.uint8)
    out: BgrImage = np.ascontiguousarray(rgb[:, :, ::-1])
    return out


@dataclass(frozen=True, slots=True)
class SceneParams:
    """How a gate-camera frame is degraded.

    Attributes:
        frame: (width, height) of the frame.
        plate_width_px: plate width in the frame (a normal gate distance at 640 px ≈ 140-200 px).
        tilt: max corner jitter as a fraction of the plate height (perspective).
        blur: max Gaussian blur sigma in pixels.
        noise: sensor noise standard deviation (0-255 scale).
        brightness: multiplier for the whole frame (< 1 = low light).
    """

    frame: tuple[int, int] = (640, 480)
    plate_width_px: tuple[int, int] = (150, 200)
    tilt: float = 0.15
    blur: float = 1.0
    noise: float = 6.0
    brightness: tuple[float, float] = (0.45, 1.0)


def render_scene(
    plate: str, rng: random.Random, params: SceneParams | None = None, font_path: Path | None = None
) -> BgrImage:
    """A gate-camera frame showing ``plate`` on a car-like background, degraded per ``params``."""
    p = params or SceneParams()
    fw, fh = p.frame
    np_rng = np.random.default_rng(rng.getrandbits(32))
    # Background: road grey, a car body of random colour with a grille.
    frame = np.full((fh, fw, 3), rng.randint(70, 120), np.uint8)
    body = tuple(int(v) for v in np_rng.integers(30, 220, 3))
    cx, cy = fw // 2 + rng.randint(-fw // 8, fw // 8), fh // 2 + rng.randint(-fh // 10, fh // 6)
    cv2.rectangle(frame, (cx - fw // 3, cy - fh // 3), (cx + fw // 3, cy + fh // 4), body, -1)
    cv2.rectangle(frame, (cx - fw // 5, cy - fh // 5), (cx + fw // 5, cy - fh // 12), (40, 40, 40), -1)
    for k in range(4):
        y = cy - fh // 5 + 8 + k * 10
        cv2.line(frame, (cx - fw // 5 + 6, y), (cx + fw // 5 - 6, y), (90, 90, 90), 2)
    plate_img = render_plate(plate, font_path)
    ph, pw = plate_img.shape[:2]
    out_w = rng.randint(*p.plate_width_px)
    out_h = out_w * ph / pw
    x0, y0 = cx - out_w / 2, cy + fh // 30
    jitter = p.tilt * out_h

    def j() -> float:
        return rng.uniform(-jitter, jitter)

    dst = np.array(
        [
            [x0 + j(), y0 + j()],
            [x0 + out_w + j(), y0 + j()],
            [x0 + out_w + j(), y0 + out_h + j()],
            [x0 + j(), y0 + out_h + j()],
        ],
        dtype=np.float32,
    )
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(plate_img, m, (fw, fh), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((ph, pw), 255, np.uint8), m, (fw, fh), flags=cv2.INTER_AREA)
    alpha = (mask.astype(np.float32) / 255.0)[:, :, None]
    img = frame.astype(np.float32) * (1 - alpha) + warped.astype(np.float32) * alpha
    sigma = rng.uniform(0.0, p.blur)
    if sigma > 0.2:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img *= rng.uniform(*p.brightness)
    img += np_rng.normal(0.0, p.noise, img.shape)
    out: BgrImage = np.clip(img, 0, 255).astype(np.uint8)
    return out

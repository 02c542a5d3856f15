"""Cheap plate localisation: where a blue or green plate's characters are, from colour and edges.

A Chinese plate is a blue (white text) or green (black text, new-energy) rectangle whose characters
give dense vertical edges; a car body, road or grille rarely has both. :func:`locate_plates` finds such
regions on a copy shrunk to :data:`LOCATE_SIDE` pixels in ~2 ms, so :class:`vision.plates.PlateReader`
can read a plate with the recogniser alone instead of running the text detector over the frame (~60 ms).
It only proposes: a region whose reading is not a valid plate of the region's colour is ignored and
the detector passes run as before. Yellow, white and black plates are never proposed (the detector
finds them). Pure: no model, no state.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vision.images import BgrImage

__all__ = ["PlateRegion", "locate_plates"]

#: Longest side of the copy the regions are looked for on.
LOCATE_SIDE = 320
#: OpenCV HSV ranges (hue 0-180): a blue plate's background, and a green new-energy plate's.
BLUE_HUE = (95, 135)
GREEN_HUE = (35, 95)
#: Least saturation / value (0-255) of a plate-coloured pixel (blue / green): dim frames still count.
BLUE_MIN_SV = (70, 30)
GREEN_MIN_SV = (40, 40)
#: A region at :data:`LOCATE_SIDE` scale must be at least this wide and high (pixels) and this wide
#: for its height (a plate is 3.1-3.4 wide for its height; its text block a little wider).
MIN_SIZE = (24, 6)
ASPECT = (1.5, 8.0)
#: At most this many regions are proposed, largest first.
MAX_REGIONS = 2


@dataclass(frozen=True, slots=True)
class PlateRegion:
    """A proposed plate region in frame pixels.

    Attributes:
        box: (x, y, w, h), axis-aligned.
        color: ``"blue"`` or ``"green"`` — whichever plate colour covers more of the region.
    """

    box: tuple[float, float, float, float]
    color: str

    @property
    def plate_length(self) -> int:
        """Characters a plate of this colour has (blue 7, green new-energy 8)."""
        return 8 if self.color == "green" else 7


def locate_plates(image: BgrImage, max_regions: int = MAX_REGIONS) -> list[PlateRegion]:
    """Regions of ``image`` where plate-coloured pixels and dense vertical edges coincide, largest first."""
    h, w = image.shape[:2]
    if h < 2 or w < 2:
        return []
    scale = min(1.0, LOCATE_SIDE / max(h, w))
    small = image
    if scale < 1.0:
        small = np.asarray(
            cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA), np.uint8
        )
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    blue = cv2.inRange(hsv, (BLUE_HUE[0], *BLUE_MIN_SV), (BLUE_HUE[1], 255, 255))
    green = cv2.inRange(hsv, (GREEN_HUE[0], *GREEN_MIN_SV), (GREEN_HUE[1], 255, 255))
    coloured = cv2.dilate(cv2.bitwise_or(blue, green), cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5)))
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    gx = cv2.convertScaleAbs(cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3))
    _, edges = cv2.threshold(gx, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    # Characters' strokes, only where they touch plate colour; joined along the line, specks removed.
    mask = cv2.bitwise_and(edges, coloured)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (15, 5)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 3)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found: list[tuple[int, PlateRegion]] = []
    for x, y, bw, bh, area in stats[1:n].tolist():
        if bw < MIN_SIZE[0] or bh < MIN_SIZE[1] or not ASPECT[0] <= bw / bh <= ASPECT[1]:
            continue
        n_blue = cv2.countNonZero(blue[y : y + bh, x : x + bw])
        n_green = cv2.countNonZero(green[y : y + bh, x : x + bw])
        box = (x / scale, y / scale, bw / scale, bh / scale)
        found.append((area, PlateRegion(box=box, color="green" if n_green > n_blue else "blue")))
    found.sort(key=lambda item: item[0], reverse=True)
    return [region for _, region in found[:max_regions]]

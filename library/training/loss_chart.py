"""A loss chart PNG drawn with Pillow (no plotting dependency): raw loss in grey, moving average in blue."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from library.atomic import atomic_path


def moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def draw_loss_chart(losses: list[float], path: str | Path, *, title: str = "loss", size: tuple[int, int] = (800, 400)) -> Path | None:
    """Write the chart; returns its path, or None when there is nothing finite to draw."""
    points = [(i + 1, v) for i, v in enumerate(losses) if math.isfinite(v)]
    if not points:
        return None
    width, height = size
    left, right, top, bottom = 70, 20, 30, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    hi = hi if hi > lo else lo + 1e-6
    n = max(len(losses), 2)

    def xy(step: float, value: float) -> tuple[float, float]:
        x = left + (step - 1) / (n - 1) * (width - left - right)
        y = top + (hi - value) / (hi - lo) * (height - top - bottom)
        return x, y

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for frac in (0.0, 0.5, 1.0):
        value = lo + frac * (hi - lo)
        _, y = xy(1, value)
        draw.text((5, y - 6), f"{value:.4f}", fill="black")
    draw.text((left, height - bottom + 8), "step 1", fill="black")
    draw.text((width - right - 80, height - bottom + 8), f"step {len(losses)}", fill="black")
    draw.text((left, 8), title, fill="black")
    if len(points) > 1:
        draw.line([xy(s, v) for s, v in points], fill=(180, 180, 180), width=1)
        smooth = moving_average([v for _, v in points], max(1, len(points) // 20))
        draw.line([xy(s, v) for (s, _), v in zip(points, smooth)], fill=(30, 90, 200), width=2)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)

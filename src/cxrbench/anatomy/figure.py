"""`cxrbench lut show`: the 27 location Gaussians drawn on the 512 x 512 frame, atlas style (docs/anatomy.md, 5.5)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from cxrbench.anatomy.lut import LUT_SIZE, LocationTable, render
from cxrbench.anatomy.vocabulary import ZONES, location_name

PANELS = (
    ("patient right (image left)", [location_name("right", z) for z in ZONES]),
    ("patient left (image right)", [location_name("left", z) for z in ZONES]),
    ("bilateral", [location_name("bilateral", z) for z in ZONES]),
    ("other", ["lingular", "cardiomegaly", "pulmonary"]),
)


def draw_lut(table: LocationTable, output: str | Path) -> Path:
    """Save a 2 x 2 figure: each location as its 1-sigma and 2-sigma ellipses over faint lung fields."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    backdrop = np.maximum(render(table.gaussians["left"]), render(table.gaussians["right"]))
    backdrop = np.maximum(backdrop, 0.6 * render(table.gaussians["cardiomegaly"]))
    fig, axes = plt.subplots(2, 2, figsize=(11, 11))
    colours = plt.get_cmap("tab10")
    for ax, (title, locations) in zip(axes.flat, PANELS, strict=True):
        ax.imshow(backdrop, cmap="gray", vmin=0, vmax=2.5, extent=(0, LUT_SIZE, LUT_SIZE, 0))
        groups: dict[object, list[str]] = {}
        for loc in locations:  # locations with one Gaussian (lower = base = pleural) share one drawing
            groups.setdefault(table.gaussians[loc], []).append(loc)
        for i, (g, names) in enumerate(groups.items()):
            loc = " = ".join(names)
            for scale, style in ((1, "-"), (2, ":")):
                ax.add_patch(
                    Ellipse(
                        (g.mu_x, g.mu_y),
                        2 * scale * g.sigma_x,
                        2 * scale * g.sigma_y,
                        fill=False,
                        linestyle=style,
                        linewidth=1.6,
                        edgecolor=colours(i % 10),
                    )
                )
            ax.plot(g.mu_x, g.mu_y, "o", color=colours(i % 10), markersize=3)
            ax.annotate(
                loc,
                (g.mu_x, g.mu_y),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=8,
                color=colours(i % 10),
                fontweight="bold",
            )
        ax.set_title(title)
        ax.set_xlim(0, LUT_SIZE)
        ax.set_ylim(LUT_SIZE, 0)
        ax.set_xticks([0, 128, 256, 384, 512])
        ax.set_yticks([0, 128, 256, 384, 512])
    source = textwrap.fill(table.source, 140)
    fig.suptitle(f"cxrbench location table (k = {table.k:g}; solid 1 sigma, dotted 2 sigma)\n{source}", fontsize=9)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output

"""Draw benchmarks/watch.py's wake latencies as an SVG bar chart (no plotting library).

python benchmarks/watch_chart.py artifacts/watch.json docs/_static/watch-latency.svg
"""

from __future__ import annotations

import json
import math
import sys
from html import escape
from pathlib import Path
from typing import Any

BAR, GAP, LEFT, TOP, WIDTH = 16, 18, 230, 40, 440
SERIES = [("p50_ms", "p50", "#4c72b0"), ("p99_ms", "p99", "#dd8452"), ("max_ms", "max", "#c44e52")]


def svg(runs: list[dict[str, Any]]) -> str:
    top = max((run["max_ms"] for run in runs), default=1.0)
    scale = math.log10(max(10.0, top * 1.2))  # log axis from 1 ms

    def x(ms: float) -> float:
        return LEFT + WIDTH * math.log10(max(1.0, ms)) / scale

    height = TOP + len(runs) * (3 * BAR + GAP) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + 110}" height="{height}"'
        ' font-family="sans-serif" font-size="12">',
        '<text x="10" y="20" font-size="14">Wake latency of blocking reads, one uvicorn'
        " process (ms, log scale)</text>",
    ]
    y = TOP
    for run in runs:
        label = run.get("label") or f"{run['database']}, {run['waiters']:,} waiters"
        out.append(f'<text x="10" y="{y + 1.8 * BAR}">{escape(label)}</text>')
        for key, name, color in SERIES:
            value = float(run[key])
            out.append(
                f'<rect x="{LEFT}" y="{y}" width="{x(value) - LEFT:.1f}" height="{BAR - 2}"'
                f' fill="{color}"/>'
            )
            out.append(f'<text x="{x(value) + 4:.1f}" y="{y + BAR - 4}">{name} {value:.1f}</text>')
            y += BAR
        y += GAP
    for ms in (1, 10, 100, 1000, 10000):
        if math.log10(ms) <= scale:
            out.append(
                f'<line x1="{x(ms):.1f}" y1="{TOP - 6}" x2="{x(ms):.1f}" y2="{y - GAP + 4}"'
                ' stroke="#999" stroke-dasharray="2,3"/>'
            )
            out.append(f'<text x="{x(ms) - 8:.1f}" y="{y + 10}">{ms:,}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.write_text(svg(json.loads(source.read_text())))


if __name__ == "__main__":
    main()

"""Collapsed stacks (``a;b;c 42`` per line, as ``py-spy --format raw`` writes) → a flame graph
SVG and the top frames by self time. Written here because py-spy renders one format per run and
the benchmark wants both the picture and the numbers from the same samples."""

from __future__ import annotations

import html
import zlib
from collections import Counter
from dataclasses import dataclass, field

WIDTH, ROW = 1400, 16


@dataclass
class Node:
    name: str
    samples: int = 0
    children: dict[str, Node] = field(default_factory=dict)


def parse(lines: list[str]) -> Counter[tuple[str, ...]]:
    """Stacks (root first) and their sample counts."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in lines:
        stack, _, count = line.strip().rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def tree(stacks: Counter[tuple[str, ...]]) -> Node:
    root = Node("all")
    for stack, count in stacks.items():
        node = root
        node.samples += count
        for frame in stack:
            node = node.children.setdefault(frame, Node(frame))
            node.samples += count
    return root


def top_self(
    stacks: Counter[tuple[str, ...]], n: int = 15, *, waits: frozenset[str] = frozenset()
) -> list[tuple[str, float]]:
    """The ``n`` frames with most samples at the top of the stack, with their share (0..1) of
    the samples that are not ``waits`` (functions where a thread only waits: sampling cannot
    always tell those from work); frames are named without their line number, so one
    function's lines add up."""
    leaf: Counter[str] = Counter()
    for stack, count in stacks.items():
        if stack[-1].partition(" (")[0] not in waits:
            leaf[_function(stack[-1])] += count
    total = sum(leaf.values()) or 1
    return [(frame, count / total) for frame, count in leaf.most_common(n)]


def _function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def svg(root: Node, title: str) -> str:
    """An icicle-style flame graph (root at the top), widths proportional to samples."""
    rects: list[str] = []
    depth = _draw(root, 0.0, 0, WIDTH / max(root.samples, 1), rects)
    height = (depth + 2) * ROW
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="monospace" font-size="11">'
        f'<text x="4" y="12">{html.escape(title)}</text>'
    )
    return head + "".join(rects) + "</svg>\n"


def _draw(node: Node, x: float, depth: int, scale: float, out: list[str]) -> int:
    width = node.samples * scale
    if width < 0.5:
        return depth
    y = (depth + 1) * ROW
    hue = 10 + zlib.crc32(node.name.encode()) % 50
    label = html.escape(node.name)
    text = label[: int(width / 7)] if width > 21 else ""
    out.append(
        f"<g><title>{label} ({node.samples} samples)</title>"
        f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{ROW - 1}" '
        f'fill="hsl({hue},80%,60%)"/><text x="{x + 2:.1f}" y="{y + 11}">{text}</text></g>'
    )
    deepest = depth
    for child in sorted(node.children.values(), key=lambda c: c.name):
        deepest = max(deepest, _draw(child, x, depth + 1, scale, out))
        x += child.samples * scale
    return deepest

"""Timelines of a scenario run: text for the terminal, and a PNG drawn without any dependency.

:func:`render_text` lists, in time order relative to the start of the run: the steps (the fault and the
heal marked), every state change from both event logs (the first switch after the fault with its
delay), the first detection after the fault, the hook runs, when a node stopped or started answering
its admin socket, and every window with two Primaries.

:func:`render_png` draws one lane per node coloured by the sampled role, the fault and heal as
vertical lines, steps as ticks, hook runs as markers and two-Primary windows in red, with a small
built-in bitmap font (zlib + the PNG chunk format: no Pillow, no matplotlib).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

from deploy.lab import checks as chk
from deploy.lab.checks import CheckResult, History

# --------------------------------------------------------------------------------------------------
# text


def _node(n: str) -> str:
    return n.upper()


def entries(history: History) -> list[tuple[float, str, str]]:
    """(time, who, what) for every line of the text timeline, sorted by time."""
    out: list[tuple[float, str, str]] = []
    ft = history.fault_time
    for st in history.steps:
        tag = "FAULT" if st.fault else "HEAL" if st.heal else "step"
        what = f"{st.where} {st.text}" + (f"  FAILED: {st.error}" if not st.ok else "")
        out.append((st.start, tag, what))
    first_switch = next(iter(chk.switches(history.transitions, ft)), None)
    for t in history.transitions:
        what = f"{t.old} -> {t.new}" + (f" ({t.reason})" if t.reason else "") + f" gen {t.generation}"
        if t is first_switch and ft is not None:
            what += f"   <- switch {t.t - ft:+.3f} s after the fault"
        out.append((t.t, _node(t.node), what))
    det = chk.first_detection(history)
    if det is not None and ft is not None:
        out.append((det[0], "DETECT", f"first detection {det[0] - ft:+.3f} s after the fault: {det[1]}"))
    for h in history.hooks:
        out.append((h.t, _node(h.node), f"hook {h.kind} ran (role {h.role}, gen {h.generation}, {h.reason})"))
    last: dict[str, bool] = {}
    for s in history.samples:
        answered = s.role is not None
        if s.node in last and last[s.node] != answered:
            what = f"admin socket answers ({s.role})" if answered else f"admin socket silent ({s.detail})"
            out.append((s.t, _node(s.node), what))
        last[s.node] = answered
    every, outside = chk.dual_primary(history.samples, history.t_end, history.excused)
    for start, end in every:
        excused = not any(abs(start - s) < 1e-9 and abs(end - e) < 1e-9 for s, e in outside)
        out.append(
            (start, "!!", f"two Primaries for {end - start:.3f} s" + (" (inside a partition, counted)" if excused else ""))
        )
    if history.aborted:
        out.append((history.t_end, "ABORT", history.aborted))
    return sorted(out, key=lambda e: e[0])


def render_text(history: History, name: str = "", results: Sequence[CheckResult] = ()) -> str:
    lines = [f"timeline of {name or 'the run'} (t = seconds since the run started)"]
    for t, who, what in entries(history):
        lines.append(f"  {t - history.t0:+9.3f}  {who:<6} {what}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# PNG

RGB = tuple[int, int, int]

ROLE_COLOURS: dict[str, RGB] = {
    "Primary": (46, 160, 67),
    "Backup": (56, 120, 220),
    "Reconnecting": (240, 160, 40),
    "Upgrade Higher": (120, 170, 230),
    "Upgrade Lower": (120, 170, 230),
    "Inactive": (150, 150, 150),
    "Stepped Down": (110, 110, 60),
    "Init": (210, 210, 210),
    "Stopping": (150, 90, 190),
    "Error": (200, 40, 40),
}
UNANSWERED: RGB = (40, 40, 40)
WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
GREY: RGB = (190, 190, 190)
RED: RGB = (220, 30, 30)
GREEN: RGB = (20, 150, 40)

# 5x7 glyphs, one string of 5 bits per row (lower case is drawn as upper case)
_GLYPHS: dict[str, tuple[str, ...]] = {
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "B": ("11110", "10001", "10001", "11110", "10001", "10001", "11110"),
    "C": ("01110", "10001", "10000", "10000", "10000", "10001", "01110"),
    "D": ("11100", "10010", "10001", "10001", "10001", "10010", "11100"),
    "E": ("11111", "10000", "10000", "11110", "10000", "10000", "11111"),
    "F": ("11111", "10000", "10000", "11110", "10000", "10000", "10000"),
    "G": ("01110", "10001", "10000", "10111", "10001", "10001", "01111"),
    "H": ("10001", "10001", "10001", "11111", "10001", "10001", "10001"),
    "I": ("01110", "00100", "00100", "00100", "00100", "00100", "01110"),
    "J": ("00111", "00010", "00010", "00010", "00010", "10010", "01100"),
    "K": ("10001", "10010", "10100", "11000", "10100", "10010", "10001"),
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "M": ("10001", "11011", "10101", "10101", "10001", "10001", "10001"),
    "N": ("10001", "10001", "11001", "10101", "10011", "10001", "10001"),
    "O": ("01110", "10001", "10001", "10001", "10001", "10001", "01110"),
    "P": ("11110", "10001", "10001", "11110", "10000", "10000", "10000"),
    "Q": ("01110", "10001", "10001", "10001", "10101", "10010", "01101"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "S": ("01111", "10000", "10000", "01110", "00001", "00001", "11110"),
    "T": ("11111", "00100", "00100", "00100", "00100", "00100", "00100"),
    "U": ("10001", "10001", "10001", "10001", "10001", "10001", "01110"),
    "V": ("10001", "10001", "10001", "10001", "10001", "01010", "00100"),
    "W": ("10001", "10001", "10001", "10101", "10101", "10101", "01010"),
    "X": ("10001", "10001", "01010", "00100", "01010", "10001", "10001"),
    "Y": ("10001", "10001", "10001", "01010", "00100", "00100", "00100"),
    "Z": ("11111", "00001", "00010", "00100", "01000", "10000", "11111"),
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
    " ": ("00000",) * 7,
    ".": ("00000", "00000", "00000", "00000", "00000", "01100", "01100"),
    ":": ("00000", "01100", "01100", "00000", "01100", "01100", "00000"),
    "-": ("00000", "00000", "00000", "11111", "00000", "00000", "00000"),
    "+": ("00000", "00100", "00100", "11111", "00100", "00100", "00000"),
    "(": ("00010", "00100", "01000", "01000", "01000", "00100", "00010"),
    ")": ("01000", "00100", "00010", "00010", "00010", "00100", "01000"),
    "/": ("00000", "00001", "00010", "00100", "01000", "10000", "00000"),
    "=": ("00000", "00000", "11111", "00000", "11111", "00000", "00000"),
    ",": ("00000", "00000", "00000", "00000", "01100", "00100", "01000"),
    "_": ("00000", "00000", "00000", "00000", "00000", "00000", "11111"),
    ">": ("01000", "00100", "00010", "00001", "00010", "00100", "01000"),
    "<": ("00010", "00100", "01000", "10000", "01000", "00100", "00010"),
    "'": ("01100", "00100", "01000", "00000", "00000", "00000", "00000"),
    "%": ("11000", "11001", "00010", "00100", "01000", "10011", "00011"),
    "?": ("01110", "10001", "00001", "00010", "00100", "00000", "00100"),
    "!": ("00100", "00100", "00100", "00100", "00100", "00000", "00100"),
    "[": ("01110", "01000", "01000", "01000", "01000", "01000", "01110"),
    "]": ("01110", "00010", "00010", "00010", "00010", "00010", "01110"),
    "|": ("00100",) * 7,
}


class Canvas:
    """An RGB raster with the few drawing primitives the timeline needs."""

    def __init__(self, width: int, height: int, background: RGB = WHITE) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, colour: RGB) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i : i + 3] = bytes(colour)

    def rect(self, x0: int, y0: int, x1: int, y1: int, colour: RGB) -> None:
        """Filled rectangle, corners included."""
        x0, x1 = max(0, min(x0, x1)), min(self.width - 1, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height - 1, max(y0, y1))
        row = bytes(colour) * (x1 - x0 + 1)
        for y in range(y0, y1 + 1):
            i = (y * self.width + x0) * 3
            self.pixels[i : i + len(row)] = row

    def vline(self, x: int, y0: int, y1: int, colour: RGB, dashed: bool = False) -> None:
        for y in range(min(y0, y1), max(y0, y1) + 1):
            if not dashed or (y // 3) % 2 == 0:
                self.set(x, y, colour)

    def text(self, x: int, y: int, text: str, colour: RGB = BLACK, scale: int = 1) -> int:
        """Draw ``text`` with its top-left corner at (x, y); return the x after it."""
        for ch in text:
            glyph = _GLYPHS.get(ch.upper(), _GLYPHS["?"])
            for r, bits in enumerate(glyph):
                for c, bit in enumerate(bits):
                    if bit == "1":
                        self.rect(
                            x + c * scale,
                            y + r * scale,
                            x + c * scale + scale - 1,
                            y + r * scale + scale - 1,
                            colour,
                        )
            x += 6 * scale
        return x

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * self.width * 3 : (y + 1) * self.width * 3])
            for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (
                struct.pack(">I", len(data))
                + kind
                + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
            )

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def _nice_step(span: float, target: int = 12) -> float:
    raw = span / target
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300):
        if step >= raw:
            return float(step)
    return 600.0


def render_png(
    history: History,
    path: Path,
    *,
    title: str = "",
    checks: Sequence[CheckResult] = (),
    width: int = 1400,
) -> Path:
    """Draw the run's timeline into ``path`` (a PNG); returns ``path``."""
    results = list(checks)
    nodes = sorted({s.node for s in history.samples} | {"a", "b"})
    left, right, top = 70, 20, 40
    lane_h, lane_gap = 36, 22
    lanes_top = top + 40
    lanes_bottom = lanes_top + len(nodes) * (lane_h + lane_gap)
    legend_y = lanes_bottom + 40
    height = legend_y + 40 + 12 * len(results) + 10
    canvas = Canvas(width, height)
    t0 = history.t0
    span = max(history.t_end - t0, 0.001)
    plot_w = width - left - right

    def x_of(t: float) -> int:
        return left + round((t - t0) / span * plot_w)

    canvas.text(left, 10, title or "switchover lab run", scale=2)
    # time axis
    step = _nice_step(span)
    axis_y = lanes_bottom + 4
    canvas.rect(left, axis_y, left + plot_w, axis_y, BLACK)
    tick = 0.0
    while tick <= span + 1e-9:
        x = x_of(t0 + tick)
        canvas.vline(x, axis_y, axis_y + 4, BLACK)
        canvas.vline(x, lanes_top - 8, axis_y, (235, 235, 235))
        canvas.text(x - 6, axis_y + 8, f"{tick:g}")
        tick += step
    canvas.text(left + plot_w - 60, axis_y + 20, "SECONDS")
    # role lanes
    for i, node in enumerate(nodes):
        y0 = lanes_top + i * (lane_h + lane_gap)
        canvas.text(10, y0 + lane_h // 2 - 7, node.upper(), scale=2)
        own = [s for s in history.samples if s.node == node]
        for j, s in enumerate(own):
            end = own[j + 1].t if j + 1 < len(own) else history.t_end
            colour = UNANSWERED if s.role is None else ROLE_COLOURS.get(s.role, GREY)
            canvas.rect(x_of(s.t), y0, max(x_of(s.t), x_of(end) - 1), y0 + lane_h, colour)
        for h in history.hooks:
            if h.node != node:
                continue
            x = x_of(h.t)
            colour = GREEN if h.kind == "commence" else RED
            for k in range(5):  # a small triangle above the lane
                canvas.rect(x - k, y0 - 7 + k, x + k, y0 - 7 + k, colour)
    # two Primaries
    every, outside = chk.dual_primary(history.samples, history.t_end, history.excused)
    for ws, we in every:
        colour = RED if any(a < we and ws < b for a, b in outside) else (240, 170, 170)
        canvas.rect(
            x_of(ws), lanes_bottom - lane_gap + 6, max(x_of(ws) + 1, x_of(we)), lanes_bottom - 6, colour
        )
    # steps, fault, heal
    for st in history.steps:
        x = x_of(st.start)
        if st.fault:
            canvas.vline(x, top + 28, axis_y, RED)
            canvas.text(x + 3, top + 28, "FAULT", RED)
        elif st.heal:
            canvas.vline(x, top + 28, axis_y, GREEN)
            canvas.text(x + 3, top + 28, "HEAL", GREEN)
        else:
            canvas.vline(x, lanes_top - 8, lanes_top - 2, (90, 90, 90))
        if not st.ok:
            canvas.text(x + 3, lanes_top - 18, "STEP FAILED", RED)
    det = chk.first_detection(history)
    if det is not None:
        x = x_of(det[0])
        canvas.vline(x, lanes_top - 4, lanes_bottom - lane_gap, (230, 120, 0), dashed=True)
    # legend and check results
    x = left
    for role in ("Primary", "Backup", "Reconnecting", "Inactive", "Stepped Down", "Init", "Stopping", "Error"):
        canvas.rect(x, legend_y, x + 10, legend_y + 8, ROLE_COLOURS[role])
        x = canvas.text(x + 14, legend_y + 1, role) + 12
    canvas.rect(x, legend_y, x + 10, legend_y + 8, UNANSWERED)
    x = canvas.text(x + 14, legend_y + 1, "no answer") + 12
    canvas.rect(x, legend_y, x + 10, legend_y + 8, RED)
    x = canvas.text(x + 14, legend_y + 1, "two primaries") + 12
    x = canvas.text(x, legend_y + 1, "hooks: ")
    canvas.rect(x, legend_y + 2, x + 6, legend_y + 6, GREEN)
    x = canvas.text(x + 10, legend_y + 1, "commence ")
    canvas.rect(x, legend_y + 2, x + 6, legend_y + 6, RED)
    canvas.text(x + 10, legend_y + 1, "discontinue")
    y = legend_y + 20
    for r in results:
        canvas.text(left, y, r.line()[:200], GREEN if r.ok else RED)
        y += 12
    path.write_bytes(canvas.png())
    return path

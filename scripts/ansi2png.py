#!/usr/bin/python3
"""Renders a terminal capture with ANSI colours (tmux capture-pane -e -p) to a PNG.

Usage: ansi2png.py INPUT.ans OUTPUT.png
Needs Debian's python3-pil and fonts-dejavu-core.
"""
import re
import sys

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
PALETTE = [(30, 30, 30), (205, 49, 49), (13, 188, 121), (229, 229, 16), (36, 114, 200), (188, 63, 188), (17, 168, 205), (229, 229, 229)]
BRIGHT = [(102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67), (59, 142, 234), (214, 112, 214), (41, 184, 219), (255, 255, 255)]
FG, BG = (220, 220, 220), (24, 24, 24)


def colour(n):
    if n < 8:
        return PALETTE[n]
    if n < 16:
        return BRIGHT[n - 8]
    if n < 232:
        n -= 16
        return tuple(55 + 40 * c if c else 0 for c in (n // 36, (n // 6) % 6, n % 6))
    g = 8 + 10 * (n - 232)
    return (g, g, g)


def parse(text):
    """Yields rows of (char, fg, bg, bold)."""
    rows = []
    fg, bg, bold, reverse = FG, BG, False, False
    for line in text.split("\n"):
        row = []
        for token in re.split(r"(\x1b\[[0-9;]*m)", line):
            if token.startswith("\x1b["):
                codes = [int(c) if c else 0 for c in token[2:-1].split(";")] or [0]
                i = 0
                while i < len(codes):
                    c = codes[i]
                    if c == 0:
                        fg, bg, bold, reverse = FG, BG, False, False
                    elif c == 1:
                        bold = True
                    elif c == 7:
                        reverse = True
                    elif c == 22:
                        bold = False
                    elif c == 27:
                        reverse = False
                    elif 30 <= c <= 37:
                        fg = colour(c - 30)
                    elif c == 39:
                        fg = FG
                    elif 40 <= c <= 47:
                        bg = colour(c - 40)
                    elif c == 49:
                        bg = BG
                    elif 90 <= c <= 97:
                        fg = colour(c - 90 + 8)
                    elif c in (38, 48) and i + 2 < len(codes) and codes[i + 1] == 5:
                        if c == 38:
                            fg = colour(codes[i + 2])
                        else:
                            bg = colour(codes[i + 2])
                        i += 2
                    i += 1
                continue
            for ch in token:
                f, b = (bg, fg) if reverse else (fg, bg)
                row.append((ch, f, b, bold))
        rows.append(row)
    while rows and not rows[-1]:
        rows.pop()
    return rows


def main():
    text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
    rows = parse(text)
    font, bold = ImageFont.truetype(FONT, 15), ImageFont.truetype(BOLD, 15)
    w, h = 9, 19
    cols = max((len(r) for r in rows), default=80)
    img = Image.new("RGB", (max(cols, 80) * w + 16, len(rows) * h + 16), BG)
    draw = ImageDraw.Draw(img)
    for y, row in enumerate(rows):
        for x, (ch, f, b, bd) in enumerate(row):
            px, py = 8 + x * w, 8 + y * h
            if b != BG:
                draw.rectangle([px, py, px + w - 1, py + h - 1], fill=b)
            if ch != " ":
                draw.text((px, py), ch, font=bold if bd else font, fill=f)
    img.save(sys.argv[2])


if __name__ == "__main__":
    main()

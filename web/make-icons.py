#!/usr/bin/env python3
"""Draw Hearth's app icons (a flame over a hearth stone) as PNGs with only the standard library.

    python3 web/make-icons.py        # writes www/icons/icon-192.png, icon-512.png, icon-maskable-512.png

The PNGs are committed; this script is how they were made and how to remake them. The shapes are
implicit functions over the unit square, sampled 4x4 per pixel for anti-aliasing, so the same
description renders at any size (www/icons/favicon.svg draws the same shapes as SVG paths).
"""
import math
import os
import struct
import zlib

BG = (28, 20, 18)          # warm near-black, the page's dark theme colour
STONE = (120, 86, 70)      # the hearth stone
OUTER_TOP = (255, 196, 64)  # outer flame: yellow at the tip ...
OUTER_BOT = (232, 78, 28)   # ... to deep orange at the base
INNER = (255, 240, 180)     # the bright core


def flame(x, y, cx, base, top, radius, lean):
    """Teardrop flame: a circle of `radius` resting at y=`base` under a tip at y=`top` (y grows down).

    Above the circle's centre the half-width shrinks as a power of the distance to the tip, which
    gives the concave sides of a flame; `lean` bends the tip sideways.
    """
    cy = base - radius
    t = (y - top) / (cy - top)  # 0 at the tip, 1 at the circle's centre
    shift = lean * (1 - t) ** 2
    dx = x - cx - shift
    if y >= cy:
        return dx * dx + (y - cy) ** 2 <= radius * radius
    if t <= 0:
        return False
    return abs(dx) <= radius * t ** 1.6


def rounded_rect(x, y, x0, y0, x1, y1, r):
    qx = max(x0 + r - x, 0, x - (x1 - r))
    qy = max(y0 + r - y, 0, y - (y1 - r))
    return x0 <= x <= x1 and y0 <= y <= y1 and qx * qx + qy * qy <= r * r


def colour_at(x, y, maskable):
    """The colour at (x, y) in [0,1]^2, or None outside the icon (transparent corners)."""
    if not maskable and not rounded_rect(x, y, 0, 0, 1, 1, 0.22):
        return None
    # Maskable icons may be cropped to a circle of 80% diameter: shrink the glyph into it.
    s = 0.78 if maskable else 1.0
    gx, gy = 0.5 + (x - 0.5) / s, 0.5 + (y - 0.5) / s
    if flame(gx, gy, 0.5, 0.69, 0.33, 0.095, -0.025):
        return INNER
    if flame(gx, gy, 0.5, 0.72, 0.12, 0.19, 0.05):
        t = min(1, max(0, (gy - 0.12) / 0.6))
        return tuple(round(a + (b - a) * t) for a, b in zip(OUTER_TOP, OUTER_BOT))
    if rounded_rect(gx, gy, 0.22, 0.76, 0.78, 0.85, 0.035):
        return STONE
    return BG


def render(size, maskable=False, ss=4):
    rows = []
    for py in range(size):
        row = bytearray([0])  # PNG filter type 0 for each scanline
        for px in range(size):
            acc = [0, 0, 0, 0]
            for sy in range(ss):
                for sx in range(ss):
                    c = colour_at((px + (sx + 0.5) / ss) / size, (py + (sy + 0.5) / ss) / size, maskable)
                    if c is not None:
                        acc[0] += c[0]; acc[1] += c[1]; acc[2] += c[2]; acc[3] += 255
            n = ss * ss
            a = acc[3] / n
            if a == 0:
                row += b'\0\0\0\0'
            else:
                # Average colour over the covered samples only (straight, not premultiplied, alpha).
                k = 255 / acc[3]
                row += bytes((round(acc[0] * k), round(acc[1] * k), round(acc[2] * k), round(a)))
        rows.append(bytes(row))
    return png(size, size, b''.join(rows))


def png(w, h, raw):
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', w, h, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b'')


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'www', 'icons')
    os.makedirs(out, exist_ok=True)
    for name, size, maskable in [('icon-192.png', 192, False), ('icon-512.png', 512, False), ('icon-maskable-512.png', 512, True)]:
        with open(os.path.join(out, name), 'wb') as f:
            f.write(render(size, maskable))
        print('wrote', os.path.join('www/icons', name))


if __name__ == '__main__':
    main()

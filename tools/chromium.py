"""Headless Chromium for the HTML certificate: the browser tests' runner and the docs' screenshots.

Usage: python tools/chromium.py [--pages-only]   (re-renders docs/examples/certificate.html and
certificate-fail.html from their JSON and, unless --pages-only, writes the screenshots docs/certify.md
shows: desktop, 400 px and printed)

Chromium is Debian's package (``apt-get install chromium poppler-utils``; pdftoppm rasterises the
printed PDF). It runs with the flags that keep it off the network and out of the user's profile.
"""

from __future__ import annotations

import html
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
CERTIFICATES = {"pass": "certificate", "fail": "certificate-fail"}
"""Screenshot name -> the example certificate's file stem in docs/examples/."""
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--hide-scrollbars",
    "--no-pdf-header-footer",
)
DESKTOP = (1000, 1500)
NARROW = (400, 1500)
"""Headless Chromium's window is at least 500 px wide: narrower views are an iframe of that width."""
WINDOW_MIN_WIDTH = 500


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing_tools() -> list[str]:
    """The Debian packages the browser checks need and this machine lacks."""
    return [
        package
        for package, command in (("chromium", chromium_path()), ("poppler-utils", shutil.which("pdftoppm")))
        if command is None
    ]


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``page`` with a fresh profile; fails with Chromium's stderr."""
    binary = chromium_path()
    if binary is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="invarlock-chromium-") as profile:
        done = subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=180,  # a hang guard, not a speed check
        )
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}: {done.stderr[-2000:]}")
    return done


def framed(page: Path, width: int, height: int, script: str = "", directory: Path | None = None) -> Path:
    """A page (in ``directory``, default next to ``page``) showing ``page`` in an iframe ``width``
    CSS px wide (the page's viewport), with ``script`` after the iframe (the frame's document is
    same-origin: it is a srcdoc)."""
    source = html.escape(page.read_text(encoding="utf-8"), quote=True)
    wrapper = (directory or page.parent) / f"{page.stem}.framed-{width}.html"
    wrapper.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>html,body{margin:0}iframe{border:0;'
        f'display:block}}</style></head><body><iframe id="page" width="{width}" height="{height}" '
        f'srcdoc="{source}"></iframe>{script}</body></html>',
        encoding="utf-8",
    )
    return wrapper


def screenshot(page: Path, out: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width >= WINDOW_MIN_WIDTH:
        chromium(page, f"--window-size={width},{height}", f"--screenshot={out}")
        return
    with tempfile.TemporaryDirectory() as scratch:
        wrapper = framed(page, width, height, directory=Path(scratch))
        chromium(wrapper, f"--window-size={WINDOW_MIN_WIDTH},{height}", f"--screenshot={out}")
    crop_png(out, width)  # the window's empty right-hand side


def crop_png(path: Path, width: int) -> None:
    """Keep the left ``width`` pixels of an 8-bit, non-interlaced RGB(A) PNG (what Chromium writes)."""
    data = path.read_bytes()
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append((data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    header = next(body for kind, body in chunks if kind == b"IHDR")
    full_width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"{path}: not an 8-bit RGB(A) non-interlaced PNG")
    pixel = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = full_width * pixel
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - pixel] if i >= pixel else 0
            up, corner = previous[i], previous[i - pixel] if i >= pixel else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(b"\x00" + bytes(line[: width * pixel]))
        previous = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    path.write_bytes(
        data[:8]
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def print_pdf(page: Path, out: Path) -> None:
    """Print as a browser prints by default: background graphics off, A4/Letter page."""
    chromium(page, f"--print-to-pdf={out}")


def rasterise(pdf: Path, out_stem: Path, *, dpi: int, png: bool = False) -> Path:
    """The PDF's first page as PPM (or PNG); returns the file pdftoppm wrote."""
    fmt = ["-png"] if png else []
    subprocess.run(
        ["pdftoppm", *fmt, "-r", str(dpi), "-f", "1", "-l", "1", "-singlefile", str(pdf), str(out_stem)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out_stem.with_suffix(".png" if png else ".ppm")


def optimise(png: Path) -> None:
    """Quantise to 64 colours where pngquant is installed (screenshots are flat colours and text)."""
    if shutil.which("pngquant"):
        subprocess.run(
            ["pngquant", "--force", "--skip-if-larger", "--output", str(png), "64", str(png)], check=False
        )


def main(argv: list[str]) -> int:
    import json

    from invarlock.certification.certificate.html import render_html

    pages_only = argv == ["--pages-only"]
    if argv and not pages_only:
        print(__doc__, file=sys.stderr)
        return 2
    for stem in CERTIFICATES.values():
        page = EXAMPLES / f"{stem}.html"
        page.write_text(render_html(json.loads((EXAMPLES / f"{stem}.json").read_text())), encoding="utf-8")
        print(f"wrote {page.relative_to(ROOT)}")
    if pages_only:
        return 0
    missing = missing_tools()
    if missing:
        print(f"install {' '.join(missing)} first (apt-get install {' '.join(missing)})", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        for name, stem in CERTIFICATES.items():
            page = EXAMPLES / f"{stem}.html"
            for view, size in (("desktop", DESKTOP), ("400px", NARROW)):
                out = EXAMPLES / f"certificate-{name}-{view}.png"
                screenshot(page, out, size)
                optimise(out)
            pdf = Path(scratch) / f"{name}.pdf"
            print_pdf(page, pdf)
            printed = rasterise(pdf, EXAMPLES / f"certificate-{name}-printed", dpi=60, png=True)
            optimise(printed)
            print(f"{name}: screenshots of {page.name} in {EXAMPLES.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

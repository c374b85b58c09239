"""Make the README's picture of a transcript: pages of the demo ceremony's transcript.pdf (the cover and the
charts page) side by side, rasterised by poppler's pdftoppm. Run by `make docs` after `make demo`.

Usage: python scripts/transcript_picture.py TRANSCRIPT.pdf OUT.png"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image


def main(pdf: Path, out: Path, pages: tuple[int, ...] = (1, 3), dpi: int = 60) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        images = []
        for page in pages:
            prefix = Path(tmp) / f"p{page}"
            subprocess.run(["pdftoppm", "-r", str(dpi), "-png", "-singlefile", "-f", str(page), "-l", str(page),
                            str(pdf), str(prefix)], check=True)
            images.append(Image.open(f"{prefix}.png").convert("RGB"))
        gap = 16
        width = sum(i.width for i in images) + gap * (len(images) + 1)
        height = max(i.height for i in images) + 2 * gap
        sheet = Image.new("RGB", (width, height), (205, 205, 205))
        x = gap
        for img in images:
            sheet.paste(img, (x, gap))
            x += img.width + gap
        sheet.save(out, optimize=True)
    print(f"{out}: pages {', '.join(map(str, pages))} of {pdf}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))

"""Build vitopt's packaged default calibration set from the shared ImageNet samples.

Calibration needs real pixel statistics, never noise, yet the wheel must stay small: so we
take an evenly spaced subset of the ILSVRC-2012 sample images, shrink them and re-encode them
as JPEG. The choice is deterministic (sorted names, fixed stride), so running this again with
the same Pillow/libjpeg gives the same files.

    .venv/bin/python scripts/make_calib_data.py
"""

from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "imagenet-samples-256.tar"
OUT = ROOT / "vitopt" / "calib_data" / "images"
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def pick(names: list[str], *, count: int) -> list[str]:
    """Every len/count-th name of the sorted list, so all parts of the class list are covered."""
    names = sorted(names)
    count = min(count, len(names))
    return [names[k * len(names) // count] for k in range(count)]


def shrink(data: bytes, *, short_side: int) -> Image.Image:
    """Resize so the short side is ``short_side``: small files, still enough pixels to crop."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    scale = short_side / min(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def build(*, source: Path, out: Path, count: int, short_side: int, quality: int) -> list[Path]:
    """Write the subset into ``out``, removing stale images first so reruns leave no leftovers."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.suffix.lower() in EXTENSIONS:
            old.unlink()
    with tarfile.open(source, "r:") as tar:
        members = {m.name: m for m in tar if m.isfile() and m.name.lower().endswith(EXTENSIONS)}
        for name in pick(list(members), count=count):
            image = shrink(tar.extractfile(members[name]).read(), short_side=short_side)
            image.save(out / Path(name).name, "JPEG", quality=quality, optimize=True)
    return sorted(p for p in out.iterdir() if p.suffix.lower() in EXTENSIONS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="tar of ImageNet sample images")
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write the JPEGs into")
    parser.add_argument("--count", type=int, default=240, help="240 keeps du -sh under 3 MB")
    parser.add_argument("--short-side", type=int, default=160)
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args()
    files = build(source=args.source, out=args.out, count=args.count,
                  short_side=args.short_side, quality=args.quality)
    total = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} images, {total / 1e6:.2f} MB of JPEG data, to {args.out}")


if __name__ == "__main__":
    main()

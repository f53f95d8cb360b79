"""``vitopt bundle OUT --platform ios|android --out app.zip`` and ``vitopt bundle verify app.zip``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vitopt.cli import app
from vitopt.cli.options import Debug
from vitopt.cli.support import console, handle_errors
from vitopt.errors import InputError

PLATFORMS = ("ios", "android")


@app.command()
@handle_errors
def bundle(
    source: Annotated[str, typer.Argument(help="A compress output folder, or 'verify' to check an archive.")],
    archive: Annotated[Optional[Path], typer.Argument(help="With 'verify': the archive to check.")] = None,
    platform: Annotated[Optional[str], typer.Option(help="ios (Core ML) or android (ONNX Runtime .ort).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The archive to write.")] = None,
    dynamic_shapes: Annotated[bool, typer.Option(
        "--dynamic-shapes", help="Android: keep a dynamic input shape (phones' accelerators want it fixed).")] = False,
    debug: Debug = False,
) -> None:  # fmt: skip
    """Pack a compress output for an app (model, labels, preprocessing, manifest), or verify such a pack."""
    if source == "verify":
        return _verify(archive)
    _create(Path(source), platform=platform, out=out, dynamic_shapes=dynamic_shapes)
    return None


def _verify(archive: Path | None) -> None:
    from vitopt.bundle.verify import verify_bundle

    if archive is None:
        raise InputError("bundle verify needs the archive to check", hint="vitopt bundle verify app.zip")
    manifest = verify_bundle(archive)
    console.print(f"[green]ok[/] {archive}: {len(manifest['files'])} files match the manifest "
                  f"({manifest['platform']}, {manifest['model']})")  # fmt: skip


def _create(out_dir: Path, *, platform: str | None, out: Path | None, dynamic_shapes: bool) -> None:
    from vitopt.bundle.archive import write_zip
    from vitopt.bundle.contents import bundle_members
    from vitopt.gate.gate import read_report

    if platform not in PLATFORMS:
        raise InputError(f"--platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")
    if out is None:
        raise InputError("bundle needs --out app.zip")
    members = bundle_members(out_dir, platform=platform, report=read_report(out_dir), dynamic_shapes=dynamic_shapes)
    write_zip(members, dest=out)
    console.print(f"[green]wrote[/] {out} ({platform}: {', '.join(sorted(members))})")
    _print_mobile(json.loads(members["manifest.json"])["mobile"])


def _print_mobile(mobile: dict) -> None:
    checker = mobile.get("checker") or {}
    if "recommended_android" in checker:
        eps = ", ".join(f"{ep} {v['verdict']} ({v['partitions']} partitions, {v['coverage']:.0%} of nodes)"
                        for ep, v in checker.items() if isinstance(v, dict))  # fmt: skip
        console.print(f"ONNX Runtime mobile checker: {eps}; on Android: {checker['recommended_android']}")
    if "static_shapes" in mobile:
        console.print(f"static input shape {mobile['input_shape']}: {mobile['static_shapes']}")
    for form in mobile.get("variants") or []:
        nnapi = form["checker"].get("NNAPI") or {}
        name = " + ".join(form["decomposed"]) + " written out" if form["decomposed"] else "as exported"
        console.print(f"{'[bold]shipped[/]' if form['chosen'] else 'judged '} {name}: NNAPI {nnapi.get('verdict')} "
                      f"({nnapi.get('partitions')} partitions)")  # fmt: skip

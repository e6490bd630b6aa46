"""Refresh the dashboard's vendored JavaScript from the npm registry (no CDN at run time).

Usage: python scripts/vendor_web_assets.py [--check]

Each package is fetched with ``npm pack`` at the pinned version, the one file the dashboard loads is copied
into ``service/web/static/vendor/`` with its licence, and ``VERSIONS.json`` records the version, licence
and SHA-256 of every file. ``--check`` only verifies the committed files against ``VERSIONS.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parents[1] / "service" / "web" / "static" / "vendor"

# package -> (pinned version, file inside the tarball, name it is served under)
PACKAGES: dict[str, tuple[str, str, str]] = {
    "htmx.org": ("2.0.11", "package/dist/htmx.min.js", "htmx.min.js"),
    "htmx-ext-sse": ("2.2.4", "package/dist/sse.min.js", "htmx-ext-sse.min.js"),
    "echarts": ("6.1.0", "package/dist/echarts.min.js", "echarts.min.js"),
}
LICENCE_NAMES = ("package/LICENSE", "package/LICENSE.md", "package/LICENSE.txt", "package/license")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def licence_from_text(text: bytes | None) -> str:
    """The licence a LICENSE file names in its first line, for packages whose manifest omits it."""
    first = (text or b"unknown").decode(errors="replace").strip().splitlines()[0]
    return "0BSD" if first.startswith("BSD Zero Clause") else first


def fetch(package: str, version: str, member: str, served_as: str, work: Path) -> dict[str, str]:
    """Download one package tarball with npm and copy its file and licence into the vendor folder."""
    output = (
        subprocess.run(
            ["npm", "pack", f"{package}@{version}", "--silent", "--pack-destination", str(work)],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    with tarfile.open(work / output) as tar:
        target = VENDOR_DIR / served_as
        source = tar.extractfile(member)
        if source is None:
            raise SystemExit(f"{package}@{version} has no {member}")
        target.write_bytes(source.read())
        manifest = json.loads(tar.extractfile("package/package.json").read())  # type: ignore[union-attr]
        licence_text = next(
            (tar.extractfile(name).read() for name in LICENCE_NAMES if name in tar.getnames()),  # type: ignore[union-attr]
            None,
        )
    licence_file = f"{Path(served_as).stem.split('.')[0]}.LICENSE.txt"
    if licence_text is not None:
        (VENDOR_DIR / licence_file).write_bytes(licence_text)
    licence = manifest.get("license") or licence_from_text(licence_text)
    return {
        "package": package,
        "version": version,
        "license": str(licence),
        "file": served_as,
        "license_file": licence_file if licence_text is not None else "",
        "sha256": sha256(target),
    }


def check() -> int:
    """Compare every vendored file with the hash recorded for it."""
    recorded = json.loads((VENDOR_DIR / "VERSIONS.json").read_text())
    bad = [e["file"] for e in recorded if sha256(VENDOR_DIR / e["file"]) != e["sha256"]]
    for name in bad:
        print(f"{name}: does not match VERSIONS.json", file=sys.stderr)
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the committed files only")
    if parser.parse_args().check:
        return check()
    VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        entries = [fetch(p, v, m, s, Path(tmp)) for p, (v, m, s) in PACKAGES.items()]
    (VENDOR_DIR / "VERSIONS.json").write_text(json.dumps(entries, indent=2) + "\n")
    for entry in entries:
        print(f"{entry['package']}@{entry['version']} ({entry['license']}) -> {entry['file']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

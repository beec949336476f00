"""Refresh the vendored uPlot of the dashboard from the npm registry.

The page has no build step and must work without internet, so uPlot's ES module,
its stylesheet and its licence are copied into the package, pinned to one version
and checked against the registry's SHA-512 integrity digest::

    python tools/vendor_uplot.py            # the pinned version, VERSION below
    python tools/vendor_uplot.py 1.6.32     # another one (then update VERSION)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "1.6.32"
REGISTRY = "https://registry.npmjs.org/uplot"
TARGET = Path(__file__).resolve().parent.parent / "deepleaps" / "dashboard" / "static" / "vendor" / "uplot"
#: Member of the npm package -> file in TARGET.
FILES = {
    "package/dist/uPlot.esm.js": "uPlot.esm.js",
    "package/dist/uPlot.min.css": "uPlot.min.css",
    "package/LICENSE": "LICENSE",
}


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def main(version: str = VERSION) -> None:
    dist = json.loads(fetch(f"{REGISTRY}/{version}"))["dist"]
    tarball = fetch(dist["tarball"])
    algorithm, _, expected = dist["integrity"].partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if actual != expected:
        sys.exit(f"uplot {version}: the tarball's {algorithm} is {actual}, the registry says {expected}")
    TARGET.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
        for member, name in FILES.items():
            extracted = archive.extractfile(member)
            if extracted is None:
                sys.exit(f"uplot {version}: {member} is not a file")
            (TARGET / name).write_bytes(extracted.read())
    (TARGET / "VERSION").write_text(f"uplot {version} {dist['integrity']}\n", encoding="utf-8")
    print(f"uplot {version} in {TARGET}")


if __name__ == "__main__":
    main(*sys.argv[1:])

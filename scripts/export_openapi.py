"""Write the service's OpenAPI document to ``openapi/openapi.json`` (sorted keys, indent 2).

Usage: ``python scripts/export_openapi.py [--check]``; ``--check`` exits 1 when the committed file
differs from what the code produces.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "openapi" / "openapi.json"


def openapi_text() -> str:
    """The OpenAPI document of ``create_app()`` with default settings, as committed."""
    sys.path.insert(0, str(ROOT))
    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(cube_dirs=[], image_roots=[]))
    return json.dumps(app.openapi(), sort_keys=True, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = openapi_text()
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("openapi.json is up to date" if same else "openapi.json is stale: run scripts/export_openapi.py")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(OUT)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

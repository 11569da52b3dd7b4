"""What the build does beyond pyproject.toml: compile the pages' translation catalogs.

Each `adminapi/pages/translations/<lang>/LC_MESSAGES/messages.po` becomes a `messages.mo`
beside it in the built package (in the source tree for an editable install, which runs from
there), so no one has to run a compile step by hand. Babel, which compiles them, is a build
requirement; without it the build still succeeds and the pages compile the `.po` files in memory
when they start.
"""

from __future__ import annotations

import logging
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CATALOG_GLOB = "adminapi/pages/translations/*/LC_MESSAGES/*.po"

log = logging.getLogger("dinomail.build")


def compile_catalogs(source_root: Path, target_root: Path) -> list[Path]:
    """Write a `.mo` under `target_root` for every catalog under `source_root`."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    written = []
    for po_path in sorted(source_root.glob(CATALOG_GLOB)):
        relative = po_path.relative_to(source_root).with_suffix(".mo")
        target = target_root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with po_path.open("rb") as file:
            catalog = read_po(file, locale=po_path.parent.parent.name)
        with target.open("wb") as file:
            write_mo(file, catalog)
        written.append(target)
    return written


class BuildPyWithCatalogs(build_py):
    def run(self) -> None:
        super().run()
        source_root = Path(__file__).resolve().parent
        target_root = source_root if self.editable_mode else Path(self.build_lib)
        try:
            compile_catalogs(source_root, target_root)
        except ImportError:
            log.warning("Babel is not installed: translation catalogs left uncompiled "
                        "(the pages compile them when they start)")


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithCatalogs})

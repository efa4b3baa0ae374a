"""Packaging hook: the wheel carries ``conf/`` (with ``conf/experiment``'s files, not the link) as ``sepnet/conf``.

``conf/`` stays at the repository top, where the design card and the docs put it;
an editable install reads it there, an installed wheel reads ``sepnet/conf``
(:data:`sepnet.app.configs.CONFIG_DIR` picks whichever exists). Everything else
about the package is in ``pyproject.toml``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TOP = Path(__file__).resolve().parent


class BuildWithConfigs(build_py):
    """``build_py`` that also copies ``conf/`` into the built package, following symlinks."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads conf/ in place
            return
        target = Path(self.build_lib) / "sepnet" / "conf"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(TOP / "conf", target, symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildWithConfigs})

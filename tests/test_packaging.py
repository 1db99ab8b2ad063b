"""What ships: every importable folder is a declared package (or setuptools warns at every
install that it "would be ignored"), and every data file is matched by package-data."""

from __future__ import annotations

import fnmatch
import runpy
import tomllib
from pathlib import Path

import setuptools

ROOT = Path(__file__).resolve().parents[1]


def _setup_py(monkeypatch) -> tuple[dict, list[str]]:
    called = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: called.update(kwargs))
    runpy.run_path(str(ROOT / "setup.py"))
    return called["package_dir"], called["packages"]


def _folder(package: str, package_dir: dict) -> Path:
    root = max((name for name in package_dir if package == name or package.startswith(name + ".")), key=len)
    return ROOT / package_dir[root] / package[len(root) + 1:].replace(".", "/")


def test_every_importable_folder_is_a_declared_package(monkeypatch):
    package_dir, packages = _setup_py(monkeypatch)
    for name, folder in package_dir.items():
        for path in [ROOT / folder, *(p for p in (ROOT / folder).rglob("*") if p.is_dir())]:
            parts = path.relative_to(ROOT / folder).parts
            if "__pycache__" in parts or not all(part.isidentifier() for part in parts):
                continue
            assert ".".join([name, *parts]) in packages, path


def test_every_data_file_is_shipped_by_package_data(monkeypatch):
    package_dir, packages = _setup_py(monkeypatch)
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    folders = {package: _folder(package, package_dir) for package in packages}
    checked = 0
    for root in package_dir.values():
        for path in (ROOT / root).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts \
                    or path.name == "_build_commit.txt":
                continue
            owner = max((p for p, f in folders.items() if path.is_relative_to(f)), key=lambda p: len(folders[p].parts))
            relative = path.relative_to(folders[owner]).as_posix()
            assert any(fnmatch.fnmatch(relative, pattern) for pattern in package_data.get(owner, [])), (owner, relative)
            checked += 1
    assert checked >= 10  # the challenge's mapping files, the synthetic counts, the configs, the CSS

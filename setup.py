"""Which folders ship as which packages; everything else about the package is in pyproject.toml.

This part cannot live in pyproject.toml without a hand-written package list: setuptools'
`[tool.setuptools.packages.find]` discovers the packages under one source root, but not
those that `package-dir` maps in from elsewhere (the Dash app in dashboard/, the study
configs in studies/configs/), so they would silently not ship. Here every root is searched,
so a new subpackage (heartbeatai.training, ...) ships without an edit. Data-only folders
(package_data/, dashboard/assets/) are namespace packages, so setuptools does not warn
that they are importable but undeclared; their files are listed in pyproject.toml's
package-data.
"""

from setuptools import find_namespace_packages, setup

# platform/ is a source root, not a package (it would shadow the stdlib `platform`).
PACKAGE_DIR = {
    "heartbeatai": "platform/heartbeatai",
    "heartbeatai.dashboard": "dashboard",
    "heartbeatai.study_configs": "studies/configs",
}
# Folders of data files whose names are no identifiers: shipped by the parent's package-data.
NOT_PACKAGES = ["package_data.*", "*__pycache__*"]


def packages() -> list[str]:
    found = []
    for name, folder in PACKAGE_DIR.items():
        found += [name] + [f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=NOT_PACKAGES)]
    return found


setup(package_dir=PACKAGE_DIR, packages=packages())

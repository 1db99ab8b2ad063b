"""Which folders ship as which packages; everything else about the package is in pyproject.toml.

This part cannot live in pyproject.toml without a hand-written package list: setuptools'
`[tool.setuptools.packages.find]` discovers the packages under one source root, but not
those that `package-dir` maps in from elsewhere (the Dash app in dashboard/, the study
configs in studies/configs/), so they would silently not ship. Here every root is searched,
so a new subpackage (heartbeatai.training, ...) ships without an edit. Data-only folders
whose names are identifiers (package_data/, package_data/synthetic/, dashboard/assets/)
are importable as namespace packages, so they are declared, or setuptools warns at every
install that they "would be ignored"; folders whose names are not identifiers
(package_data/evaluation-2021/) cannot be packages and ship as their parent's data. The
files are listed in pyproject.toml's package-data.
"""

from setuptools import find_namespace_packages, setup

# platform/ is a source root, not a package (it would shadow the stdlib `platform`).
PACKAGE_DIR = {
    "heartbeatai": "platform/heartbeatai",
    "heartbeatai.dashboard": "dashboard",
    "heartbeatai.study_configs": "studies/configs",
}
NOT_PACKAGES = ["*__pycache__*"]


def packages() -> list[str]:
    found = []
    for name, folder in PACKAGE_DIR.items():
        subs = find_namespace_packages(folder, exclude=NOT_PACKAGES)
        # evaluation-2021/ is no identifier: its files ship as package_data's, not as a package.
        found += [name] + [f"{name}.{sub}" for sub in subs if all(part.isidentifier() for part in sub.split("."))]
    return found


setup(package_dir=PACKAGE_DIR, packages=packages())

"""Maps the top-level component folders into one `meshlet` import namespace.

`controller/` is importable as `meshlet.controller`, `proxy/` as `meshlet.proxy`,
and so on, so no import name collides with another distribution's.
"""
from pathlib import Path

from setuptools import find_packages, setup

COMPONENTS = ["api", "controller", "destination", "identity", "proxy", "injector", "viz", "e2e"]

packages: list[str] = []
package_dir: dict[str, str] = {}
for component in COMPONENTS:
    if not (Path(__file__).parent / component / "__init__.py").exists():
        continue
    root = f"meshlet.{component}"
    packages.append(root)
    package_dir[root] = component
    for sub in find_packages(component):
        packages.append(f"{root}.{sub}")
        package_dir[f"{root}.{sub}"] = f"{component}/{sub.replace('.', '/')}"

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"": ["*.proto", "*.yaml", "*.html", "*.js", "*.css", "py.typed"]},
    include_package_data=True,
)

"""Vendor browser bundles: GraphiQL's into ``service/static/graphiql/`` (``make
vendor-graphiql``), the dashboard's graphql-ws client into ``service/static/dashboard/vendor/``
(``make vendor-dashboard``).

GraphiQL's packages are the ones Strawberry's own GraphiQL page loads from a public CDN
(``strawberry/static/graphiql.html``), pinned here; the dashboard's is graphql-ws's browser
(UMD) build. Each is fetched with ``npm pack`` (the npm client and the registry it is
configured with), checked against the integrity npm reports, and the files the page loads are
copied with the package's licence into ``<target>/NAME@VERSION/``; ``<target>/manifest.json``
is rewritten to list them (name, version, source, integrity, and a SHA-384 per file that the
page uses as its ``integrity`` attribute). Directories of versions no longer pinned are removed.

    .venv/bin/python service/static/vendor.py             # GraphiQL
    .venv/bin/python service/static/vendor.py dashboard   # the dashboard's graphql-ws
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET = HERE / "graphiql"
LICENCE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "license")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    files: tuple[str, ...]  # paths inside the package, in the order the page loads them
    # packages whose licence also covers this one, when it ships none of its own
    licences_from: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


# In the order the page loads them: React before GraphiQL, GraphiQL before its plugin.
PACKAGES = (
    Package("react", "18.2.0", ("umd/react.production.min.js",)),
    Package("react-dom", "18.2.0", ("umd/react-dom.production.min.js",)),
    Package("js-cookie", "3.0.5", ("dist/js.cookie.min.js",)),
    Package("graphiql", "3.8.3", ("graphiql.min.css", "graphiql.min.js")),
    Package(
        "@graphiql/plugin-explorer",
        "1.0.2",
        ("dist/style.css", "dist/index.umd.js"),
        # it ships no licence file: MIT from GraphiQL's repository, and it bundles
        # graphiql-explorer
        licences_from=("graphiql@3.8.3", "graphiql-explorer@0.9.0"),
    ),
)

# The dashboard's subscription client (service/dashboard.py): its UMD build, a classic script
# that defines ``window.graphqlWs`` (no dependencies).
DASHBOARD_TARGET = HERE / "dashboard" / "vendor"
DASHBOARD_PACKAGES = (Package("graphql-ws", "6.4.2", ("umd/graphql-ws.min.js",)),)


@dataclass(frozen=True)
class Bundle:
    """What one page vendors, and where."""

    target: Path
    packages: tuple[Package, ...]
    about: str


BUNDLES = {
    "graphiql": Bundle(
        TARGET,
        PACKAGES,
        "GraphiQL's browser bundles, served by the app with DEBUG=true. Written by "
        "`make vendor-graphiql` (service/static/vendor.py): change the pins there, not here.",
    ),
    "dashboard": Bundle(
        DASHBOARD_TARGET,
        DASHBOARD_PACKAGES,
        "The dashboard's graphql-ws client, served by the app at /dashboard/assets/vendor/. "
        "Written by `make vendor-dashboard` (service/static/vendor.py): change the pins there, "
        "not here.",
    ),
}


def sri(data: bytes, algorithm: str) -> str:
    """A Subresource Integrity value (``sha384-…``), the form npm uses too."""
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode()}"


def npm_pack(spec: str, into: Path) -> tuple[Path, dict[str, Any]]:
    """Download ``spec``'s tarball with ``npm pack``; the tarball and what npm says of it."""
    try:
        result = subprocess.run(
            ["npm", "pack", spec, "--json", "--pack-destination", str(into)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
    except FileNotFoundError:
        sys.exit("npm is needed to vendor GraphiQL (Debian: apt-get install npm)")
    except subprocess.CalledProcessError as error:
        sys.exit(f"npm pack {spec} failed:\n{error.stderr}")
    (info,) = json.loads(result.stdout)
    tarball = into / info["filename"]
    integrity = sri(tarball.read_bytes(), "sha512")
    if integrity != info["integrity"]:
        sys.exit(f"{spec}: the tarball's integrity {integrity} is not npm's {info['integrity']}")
    return tarball, info


def read_members(tarball: Path) -> dict[str, bytes]:
    """The regular files of an npm tarball by their path inside the package."""
    members: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            extracted = archive.extractfile(member)
            if extracted is not None:
                members[member.name.partition("/")[2]] = extracted.read()
    return members


def licence_of(members: dict[str, bytes]) -> bytes | None:
    for name in LICENCE_NAMES:
        if name in members:
            return members[name]
    return None


def vendor(package: Package, work: Path, target: Path = TARGET) -> dict[str, Any]:
    """Copy one package's files and licence into ``target``; its manifest entry."""
    tarball, info = npm_pack(package.spec, work)
    members = read_members(tarball)
    metadata = json.loads(members["package.json"])
    directory = target / package.spec
    if directory.exists():
        shutil.rmtree(directory)
    files = []
    for path in package.files:
        if path not in members:
            sys.exit(f"{package.spec} has no {path}")
        destination = directory / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(members[path])
        files.append({"path": f"{package.spec}/{path}", "integrity": sri(members[path], "sha384")})
    licences = []
    own = licence_of(members)
    if own is not None:
        (directory / "LICENSE").write_bytes(own)
        licences.append(f"{package.spec}/LICENSE")
    for spec in package.licences_from:
        text = licence_of(read_members(npm_pack(spec, work)[0]))
        if text is None:
            sys.exit(f"{spec} ships no licence file")
        name = f"LICENSE.{spec.rpartition('@')[0].replace('/', '-')}"
        (directory / name).write_bytes(text)
        licences.append(f"{package.spec}/{name}")
    if not licences:
        sys.exit(f"{package.spec} ships no licence file: name one in licences_from")
    return {
        "name": package.name,
        "version": package.version,
        "license": metadata.get("license"),
        "source": f"npm:{package.spec}",
        "tarball": info["filename"],
        "integrity": info["integrity"],
        "files": files,
        "licenseFiles": licences,
    }


def main(argv: list[str] | None = None) -> None:
    names = sys.argv[1:] if argv is None else argv
    name = names[0] if names else "graphiql"
    if name not in BUNDLES or len(names) > 1:
        sys.exit(f"usage: vendor.py [{' | '.join(BUNDLES)}]")
    bundle = BUNDLES[name]
    target, manifest_file = bundle.target, bundle.target / "manifest.json"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        entries = [vendor(package, Path(work), target) for package in bundle.packages]
    pinned = {package.spec for package in bundle.packages}
    for stale in target.glob("?*@*"):
        if stale.is_dir() and not stale.name.startswith("@") and stale.name not in pinned:
            shutil.rmtree(stale)
    for scope in target.glob("@*"):
        for stale in scope.iterdir():
            if f"{scope.name}/{stale.name}" not in pinned:
                shutil.rmtree(stale)
        if not any(scope.iterdir()):
            scope.rmdir()
    manifest = {"about": bundle.about, "packages": entries}
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for entry in entries:
        print(f"{entry['name']}@{entry['version']}: {len(entry['files'])} files")
    print(f"wrote {manifest_file.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()

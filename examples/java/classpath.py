"""Resolves pom.xml's dependencies against Debian's Maven repository, offline.

    python3 examples/java/classpath.py compile|runtime [POM] [REPO]

prints the classpath (jars joined by ':') that Maven would build for that scope, with
the coordinates of POM (default: the pom.xml beside this script) looked up in REPO
(default /usr/share/maven-repo, where Debian's lib*-java packages install their jars
and poms). Versions are not compared: Debian packages one version of each library and
its poms name it `debian`, so a coordinate resolves to that one. Transitive
dependencies follow Maven's rules: compile and runtime scopes, never optional ones,
exclusions honoured, scopes from <dependencyManagement>, a <parent>'s dependencies
inherited, relocations followed. A coordinate that is not installed fails the build,
naming it, rather than leaving a class to be missed at run time.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

NS = "{http://maven.apache.org/POM/4.0.0}"
# Which dependency scopes each classpath holds, for the pom's own dependencies and for
# those they bring (Maven's table: provided and test never travel).
DIRECT = {"compile": {"compile", "provided"}, "runtime": {"compile", "runtime"}}
TRANSITIVE = {"compile": {"compile"}, "runtime": {"compile", "runtime"}}
# Annotation-only artifacts whose Debian package is heavy (animal-sniffer's brings Maven
# itself): left out when not installed, as the JVM ignores an annotation whose class is
# missing. grpc-core names this one, for @IgnoreJRERequirement.
ANNOTATIONS_ONLY = {"org.codehaus.mojo:animal-sniffer-annotations"}


def _children(element: ET.Element, path: str) -> list[ET.Element]:
    """The elements at path (tags separated by '/'), in a pom with or without the
    namespace (the project's pom.xml has it, most of Debian's do not)."""
    found = element.findall(path)
    return found or element.findall("/".join(NS + tag for tag in path.split("/")))


def _text(element: ET.Element, tag: str) -> str:
    found = _children(element, tag)
    return (found[0].text or "").strip() if found else ""


def _key(element: ET.Element) -> str:
    return f"{_text(element, 'groupId')}:{_text(element, 'artifactId')}"


class Repository:
    """A Maven repository on disk, as Debian lays it out."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def pom(self, key: str) -> tuple[ET.Element, Path]:
        """The installed pom of group:artifact (relocations followed) and its folder:
        Debian's `debian` version, else the newest one there."""
        group, artifact = key.split(":")
        base = self.root / group.replace(".", "/") / artifact
        versions = sorted(p for p in base.glob("*") if p.is_dir()) if base.is_dir() else []
        folder = base / "debian" if (base / "debian").is_dir() else max(versions, default=None)
        poms = sorted(folder.glob("*.pom")) if folder else []
        if folder is None or not poms:
            raise LookupError(f"{key} is not in {self.root}")
        root = ET.parse(poms[0]).getroot()
        for relocation in _children(root, "distributionManagement/relocation"):
            group = _text(relocation, "groupId") or group
            return self.pom(f"{group}:{_text(relocation, 'artifactId') or artifact}")
        return root, folder

    def _lineage(self, root: ET.Element) -> list[ET.Element]:
        """The pom and its parents, nearest first (a parent not installed ends the line)."""
        for parent in _children(root, "parent"):
            try:
                parent_root, _ = self.pom(_key(parent))
            except LookupError:
                break
            return [root, *self._lineage(parent_root)]
        return [root]

    def dependencies(self, root: ET.Element) -> list[tuple[str, str, bool, ET.Element]]:
        """The pom's <dependencies> and its parents' (Maven inherits them) as (key, scope,
        optional, element); a scope or optional flag left out may come from the nearest
        <dependencyManagement>."""
        lineage = self._lineage(root)
        managed: dict[str, ET.Element] = {}
        for pom in reversed(lineage):
            for entry in _children(pom, "dependencyManagement/dependencies/dependency"):
                managed[_key(entry)] = entry
        found = []
        for pom in lineage:
            for dependency in _children(pom, "dependencies/dependency"):
                key = _key(dependency)
                rule = managed.get(key, dependency)
                scope = _text(dependency, "scope") or _text(rule, "scope") or "compile"
                optional = (_text(dependency, "optional") or _text(rule, "optional")) == "true"
                found.append((key, scope, optional, dependency))
        return found


def resolve(pom: Path, scope: str, repository: Repository) -> list[Path]:
    """The jars of pom's dependencies for scope and of theirs, breadth first, each once."""
    jars: list[Path] = []
    seen: set[str] = set()
    queue = [
        (_key(dependency), dependency, frozenset[str]())
        for dependency in _children(ET.parse(pom).getroot(), "dependencies/dependency")
        if (_text(dependency, "scope") or "compile") in DIRECT[scope]
    ]
    while queue:
        key, dependency, excluded = queue.pop(0)
        if key in seen or key in excluded or f"{key.split(':')[0]}:*" in excluded:
            continue
        seen.add(key)
        try:
            root, folder = repository.pom(key)
        except LookupError:
            if key in ANNOTATIONS_ONLY:
                continue
            raise
        if (_text(root, "packaging") or "jar") != "pom":
            jar = min(folder.glob("*.jar"), default=None)
            if jar is None:
                raise LookupError(f"{key} has no jar in {folder}")
            jars.append(jar)
        excluded |= {_key(e) for e in _children(dependency, "exclusions/exclusion")}
        queue += [
            (child, element, excluded)
            for child, child_scope, optional, element in repository.dependencies(root)
            if not optional and child_scope in TRANSITIVE[scope]
        ]
    return jars


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in DIRECT:
        print(f"usage: {sys.argv[0]} compile|runtime [POM] [REPO]", file=sys.stderr)
        return 2
    pom = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("pom.xml")
    repository = Repository(Path(argv[2]) if len(argv) > 2 else Path("/usr/share/maven-repo"))
    try:
        jars = resolve(pom, argv[0], repository)
    except LookupError as exc:
        print(
            f"{sys.argv[0]}: {exc}; install its Debian package (examples/java/README.md)",
            file=sys.stderr,
        )
        return 1
    print(":".join(str(jar) for jar in jars))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

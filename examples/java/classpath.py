"""Resolves pom.xml's dependencies against Debian's Maven repository, offline.

    python3 examples/java/classpath.py compile|runtime [POM] [REPO]

prints the classpath (jars joined by ':') that Maven would build for that scope, with
the coordinates of POM (default: the pom.xml beside this script) looked up in REPO
(default /usr/share/maven-repo, where Debian's lib*-java packages install their jars
and poms). Versions are not compared: Debian packages one version of each library and
its poms name it `debian`, so a coordinate resolves to that one. Transitive
dependencies follow Maven's rules: compile and runtime scopes, never optional ones,
exclusions honoured, `<parent>` dependencies inherited, relocations followed. A
coordinate that is not installed fails the build, naming it, rather than leaving a
class to be missed at run time.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

NS = {"m": "http://maven.apache.org/POM/4.0.0"}
# Which dependency scopes each classpath holds, for the pom's own dependencies and for
# those they bring (Maven's table: provided and test never travel).
DIRECT = {"compile": {"compile", "provided"}, "runtime": {"compile", "runtime"}}
TRANSITIVE = {"compile": {"compile"}, "runtime": {"compile", "runtime"}}
# Annotation-only artifacts that Debian packages with heavy dependencies (animal-sniffer
# brings Maven itself): left out when they are not installed, as the JVM ignores an
# annotation whose class is missing. grpc-core names this one, for @IgnoreJRERequirement.
ANNOTATIONS_ONLY = {"org.codehaus.mojo:animal-sniffer-annotations"}


def _text(element: ET.Element, tag: str, default: str = "") -> str:
    found = element.find(f"m:{tag}", NS)
    if found is None:
        found = element.find(tag)
    return (found.text or "").strip() if found is not None and found.text else default


def _children(element: ET.Element, path: str) -> list[ET.Element]:
    return element.findall("/".join(f"m:{part}" for part in path.split("/")), NS) + (
        element.findall(path)
    )


def _parse(pom: Path) -> ET.Element:
    return ET.parse(pom).getroot()


class Repository:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, group: str, artifact: str) -> Path:
        """The installed version's folder: Debian's `debian` alias, else the only one."""
        base = self.root / group.replace(".", "/") / artifact
        if (base / "debian").is_dir():
            return base / "debian"
        versions = sorted(p for p in base.glob("*") if p.is_dir()) if base.is_dir() else []
        if not versions:
            raise LookupError(f"{group}:{artifact} is not in {self.root}")
        return versions[-1]

    def pom(self, group: str, artifact: str) -> tuple[ET.Element, Path]:
        folder = self.folder(group, artifact)
        poms = sorted(folder.glob("*.pom"))
        if not poms:
            raise LookupError(f"{group}:{artifact} has no pom in {folder}")
        root = _parse(poms[0])
        for relocation in _children(root, "distributionManagement/relocation"):
            return self.pom(
                _text(relocation, "groupId", group), _text(relocation, "artifactId", artifact)
            )
        return root, folder

    def _lineage(self, root: ET.Element) -> list[ET.Element]:
        """The pom and its parents, nearest first (a missing parent ends the line)."""
        line = [root]
        for parent in _children(root, "parent"):
            try:
                parent_root, _ = self.pom(_text(parent, "groupId"), _text(parent, "artifactId"))
            except LookupError:
                break
            line += self._lineage(parent_root)
        return line

    def dependencies(self, root: ET.Element) -> list[tuple[ET.Element, str, bool]]:
        """The pom's <dependencies> with those its parents declare (Maven inherits them),
        each with its scope and optional flag, which <dependencyManagement> may supply."""
        lineage = self._lineage(root)
        managed: dict[str, ET.Element] = {}
        for pom in reversed(lineage):  # the nearest declaration wins
            for entry in _children(pom, "dependencyManagement/dependencies/dependency"):
                managed[f"{_text(entry, 'groupId')}:{_text(entry, 'artifactId')}"] = entry
        found = []
        for pom in lineage:
            for dependency in _children(pom, "dependencies/dependency"):
                rule = managed.get(f"{_text(dependency, 'groupId')}:{_text(dependency, 'artifactId')}")
                scope = _text(dependency, "scope") or (rule is not None and _text(rule, "scope"))
                optional = _text(dependency, "optional") or (
                    rule is not None and _text(rule, "optional")
                )
                found.append((dependency, scope or "compile", optional == "true"))
        return found


def resolve(pom: Path, scope: str, repository: Repository) -> list[Path]:
    """The jars of pom's dependencies and theirs, breadth first, each once."""
    jars: list[Path] = []
    seen: set[str] = set()
    queue: list[tuple[ET.Element, frozenset[str]]] = [
        (dependency, frozenset())
        for dependency in _children(_parse(pom), "dependencies/dependency")
        if _text(dependency, "scope", "compile") in DIRECT[scope]
    ]
    while queue:
        dependency, excluded = queue.pop(0)
        group, artifact = _text(dependency, "groupId"), _text(dependency, "artifactId")
        key = f"{group}:{artifact}"
        if key in seen or key in excluded or f"{group}:*" in excluded:
            continue
        seen.add(key)
        try:
            root, folder = repository.pom(group, artifact)
        except LookupError:
            if key in ANNOTATIONS_ONLY:
                continue
            raise
        if _text(root, "packaging", "jar") != "pom":
            jar = next(iter(sorted(folder.glob("*.jar"))), None)
            if jar is None:
                raise LookupError(f"{key} has no jar in {folder}")
            jars.append(jar)
        excluded = excluded | {
            f"{_text(e, 'groupId')}:{_text(e, 'artifactId')}"
            for e in _children(dependency, "exclusions/exclusion")
        }
        for child, child_scope, optional in repository.dependencies(root):
            if not optional and child_scope in TRANSITIVE[scope]:
                queue.append((child, excluded))
    return jars


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in DIRECT:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    pom = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("pom.xml")
    repository = Repository(Path(argv[2]) if len(argv) > 2 else Path("/usr/share/maven-repo"))
    try:
        jars = resolve(pom, argv[0], repository)
    except LookupError as exc:
        print(f"{sys.argv[0]}: {exc}; install its Debian package (examples/java/README.md)",
            file=sys.stderr,
        )
        return 1
    print(":".join(str(jar) for jar in jars))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`netsprint release`: regenerate the learner's notebooks/ from solutions/.

nbgrader runs in a temporary course directory, so its `--force` (which deletes the release
folder) never touches notebooks/. A release notebook the learner has edited is never
overwritten without --force, and then a backup is kept in .netsprint/backups/.

`notebooks/.release-manifest.json` (committed) holds the hash of every released file. A
notebook whose hash is still in it is unedited and is replaced by a newer release; an edited
one is the learner's work: kept when the release did not change, and never overwritten
without --force when it did.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from netsprint.course.paths import CourseRoot, read_json, write_json
from netsprint.course.workspace import generate_release, temporary_course

console = Console(stderr=False, highlight=False)


@dataclass
class WeekDiff:
    week: str
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


def release_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".ipynb_checkpoints" not in p.parts}


def compare(week: str, generated: dict[str, bytes], target: Path) -> WeekDiff:
    diff = WeekDiff(week)
    for name, data in generated.items():
        path = target / name
        if not path.exists():
            diff.new.append(name)
        elif path.read_bytes() != data:
            diff.changed.append(name)
    if target.is_dir():
        diff.extra = sorted(
            str(p.relative_to(target)) for p in target.rglob("*.ipynb")
            if ".ipynb_checkpoints" not in p.parts and str(p.relative_to(target)) not in generated)
    return diff


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


MANIFEST = ".release-manifest.json"


def manifest_path(course: CourseRoot) -> Path:
    return course.notebooks / MANIFEST


class Releaser:
    """Owns the decision to write, keep or back up each release file; owns no notebook content."""

    def __init__(self, course: CourseRoot, force: bool) -> None:
        self.course = course
        self.force = force
        self.manifest_path = manifest_path(course)
        self.manifest: dict[str, str] = read_json(self.manifest_path, {})
        self.stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.written = 0
        self.kept: list[str] = []
        self.refused: list[str] = []
        self.backups: list[Path] = []

    def write(self, week: str, diff: WeekDiff, generated: dict[str, bytes]) -> None:
        target = self.course.notebooks / week
        for name in diff.new + diff.changed:
            rel, path, fresh = f"{week}/{name}", target / name, sha256(generated[name])
            released_before = self.manifest.get(rel)
            if path.exists() and released_before != sha256(path.read_bytes()):
                if released_before == fresh:  # the learner's work, and nothing new to bring
                    self.kept.append(rel)
                    continue
                if not self.force:
                    self.refused.append(rel)
                    continue
                self.backup(rel, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(generated[name])
            self.manifest[rel] = fresh
            self.written += 1
        for name, data in generated.items():
            if name not in diff.new + diff.changed:
                self.manifest[f"{week}/{name}"] = sha256(data)

    def backup(self, rel: str, path: Path) -> None:
        dest = self.course.state_dir / "backups" / self.stamp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        self.backups.append(dest)

    def save(self) -> None:
        # Sorted, so the committed file changes only where a release did.
        write_json(self.manifest_path, dict(sorted(self.manifest.items())))


def generate_all(course: CourseRoot, weeks: list[str]) -> dict[str, dict[str, bytes]]:
    with temporary_course(course, weeks) as tmp:
        return {week: release_files(generate_release(tmp, week)) for week in weeks}


def check_release(course: CourseRoot, weeks: list[str]) -> int:
    out_of_sync = []
    manifest = read_json(manifest_path(course), {})
    for week, generated in generate_all(course, weeks).items():
        diff = compare(week, generated, course.notebooks / week)
        for label, names in (("missing", diff.new), ("differs", diff.changed),
                             ("not in the release", diff.extra)):
            out_of_sync += [f"notebooks/{week}/{n}: {label}" for n in names]
        recorded = {k: v for k, v in manifest.items() if k.startswith(f"{week}/")}
        if recorded != {f"{week}/{n}": sha256(d) for n, d in generated.items()}:
            out_of_sync.append(f"notebooks/{MANIFEST}: stale for {week}")
    if out_of_sync:
        console.print("[red]notebooks/ is out of sync with solutions/:[/red]")
        for line in out_of_sync:
            console.print(f"  {line}")
        console.print("Run `netsprint release` to regenerate it.")
        return 1
    console.print(f"[green]notebooks/ matches solutions/[/green] ({', '.join(weeks)})")
    return 0


def run_release(course: CourseRoot, weeks: list[str], force: bool) -> int:
    releaser = Releaser(course, force)
    for week, generated in generate_all(course, weeks).items():
        diff = compare(week, generated, course.notebooks / week)
        before = releaser.written
        releaser.write(week, diff, generated)
        console.print(f"{week}: {releaser.written - before} file(s) written")
        for name in diff.extra:
            console.print(f"  [yellow]kept[/yellow] notebooks/{week}/{name} (not in the release)")
    releaser.save()
    if releaser.kept:
        console.print("kept your work (no newer release of it): " + ", ".join(releaser.kept))
    for path in releaser.backups:
        console.print(f"[yellow]backed up your edited copy to[/yellow] {path}")
    if releaser.refused:
        console.print("[red]not overwritten, you edited them:[/red] " + ", ".join(releaser.refused))
        console.print("Keep your work elsewhere or run `netsprint release --force` "
                      "(it backs them up to .netsprint/backups/ first).")
        return 1
    return 0


def main(weeks: list[str], check: bool = False, force: bool = False,
         root: Path | None = None) -> int:
    course = CourseRoot.find(root)
    selected = course.select_weeks(weeks)
    if check:
        return check_release(course, selected)
    return run_release(course, selected, force)

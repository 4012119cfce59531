"""`netsprint release`: regenerate the learner's notebooks/ from solutions/.

nbgrader runs in a temporary course directory, so its `--force` (which deletes the release
folder) never touches notebooks/. A release notebook the learner has edited is never
overwritten without --force, and then a backup is kept in .netsprint/backups/.

A notebook counts as unedited when it equals the last release written here (hashes in
.netsprint/release-manifest.json) or the version committed in git.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from netsprint.course.paths import CourseRoot, read_json, week_number, write_json
from netsprint.course.workspace import generate_release, temporary_course

console = Console(stderr=False, highlight=False)


@dataclass
class WeekDiff:
    week: str
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not (self.new or self.changed or self.extra)


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


def committed_unchanged(path: Path, repo: Path) -> bool:
    """True when git tracks `path` and it has no uncommitted change."""
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=repo,
                                 capture_output=True).returncode == 0
        clean = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", str(path)], cwd=repo,
                               capture_output=True).returncode == 0
    except FileNotFoundError:
        return False
    return tracked and clean


class Releaser:
    """Owns the decision to write, keep or back up each release file; owns no notebook content."""

    def __init__(self, course: CourseRoot, force: bool) -> None:
        self.course = course
        self.force = force
        self.manifest_path = course.state_dir / "release-manifest.json"
        self.manifest: dict[str, str] = read_json(self.manifest_path, {})
        self.stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.refused: list[str] = []
        self.backups: list[Path] = []

    def unedited(self, rel: str, path: Path) -> bool:
        return (self.manifest.get(rel) == sha256(path.read_bytes())
                or committed_unchanged(path, self.course.root))

    def write(self, week: str, diff: WeekDiff, generated: dict[str, bytes]) -> None:
        target = self.course.notebooks / week
        for name in diff.new + diff.changed:
            rel, path = f"{week}/{name}", target / name
            if path.exists() and not self.unedited(rel, path):
                if not self.force:
                    self.refused.append(rel)
                    continue
                self.backup(rel, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(generated[name])
        for name, data in generated.items():
            if f"{week}/{name}" not in self.refused:
                self.manifest[f"{week}/{name}"] = sha256(data)

    def backup(self, rel: str, path: Path) -> None:
        dest = self.course.state_dir / "backups" / self.stamp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        self.backups.append(dest)

    def save(self) -> None:
        write_json(self.manifest_path, self.manifest)


def generate_all(course: CourseRoot, weeks: list[str]) -> dict[str, dict[str, bytes]]:
    with temporary_course(course, weeks) as tmp:
        return {week: release_files(generate_release(tmp, week)) for week in weeks}


def check_release(course: CourseRoot, weeks: list[str]) -> int:
    out_of_sync = []
    for week, generated in generate_all(course, weeks).items():
        diff = compare(week, generated, course.notebooks / week)
        for label, names in (("missing", diff.new), ("differs", diff.changed),
                             ("not in the release", diff.extra)):
            out_of_sync += [f"notebooks/{week}/{n}: {label}" for n in names]
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
        releaser.write(week, diff, generated)
        written = len(diff.new) + len(diff.changed)
        console.print(f"{week}: {written} file(s) written, {len(generated) - written} unchanged")
        for name in diff.extra:
            console.print(f"  [yellow]kept[/yellow] notebooks/{week}/{name} (not in the release)")
    releaser.save()
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
    selected = sorted(set(weeks)) if weeks else course.weeks()
    for week in selected:
        week_number(week)
    if check:
        return check_release(course, selected)
    return run_release(course, selected, force)

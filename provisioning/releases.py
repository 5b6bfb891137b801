"""Releases on a station as pure functions, like provisioning/plan.py: facts in, commands out.

Each release is a directory under ``/opt/sampling-station/releases`` with its own virtual
environment; ``current`` is a symbolic link switched atomically. A release that failed its
health check is marked ``.failed`` and pruned first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from provisioning.plan import Shell, Step, Upload, q, rooted


@dataclass(frozen=True)
class ReleaseInfo:
    name: str
    installed_at: str
    failed: bool = False  # its health check failed here and it was rolled back


@dataclass(frozen=True)
class Releases:
    complete: list[ReleaseInfo]  # oldest first
    incomplete: list[str]
    current: str | None

    def names(self) -> list[str]:
        return [r.name for r in self.complete]


def releases_fact_command(prefix: str, releases: PurePosixPath, current: PurePosixPath) -> str:
    rdir = q(rooted(prefix, releases))
    link = q(rooted(prefix, current))
    return (
        f'if [ -d {rdir} ]; then for d in {rdir}/*/; do [ -d "$d" ] || continue; '
        'n=$(basename "$d"); if [ -f "$d/.release.json" ]; then '
        'f=; [ -f "$d/.failed" ] && f=failed; '
        'printf "R\\t%s\\t%s\\t%s\\n" "$n" "$f" "$(tr -d "\\n" < "$d/.release.json")"; '
        'else printf "P\\t%s\\n" "$n"; fi; done; fi; '
        f'printf "C\\t%s\\n" "$(readlink {link} 2>/dev/null)"'
    )


def parse_releases(lines: Iterable[str]) -> Releases:
    complete: list[ReleaseInfo] = []
    incomplete: list[str] = []
    current: str | None = None
    for line in lines:
        parts = line.rstrip("\n").split("\t", 3)
        if parts[0] == "R" and len(parts) == 4:
            try:
                meta = json.loads(parts[3])
                at = str(meta.get("installed_at", ""))
                complete.append(ReleaseInfo(parts[1], at, parts[2] == "failed"))
            except ValueError:
                incomplete.append(parts[1])
        elif parts[0] == "P":
            incomplete.append(parts[1])
        elif parts[0] == "C" and len(parts) > 1 and parts[1].strip():
            current = PurePosixPath(parts[1].strip()).name
    complete.sort(key=lambda r: (r.installed_at, r.name))
    return Releases(complete, incomplete, current)


def plan_release_install(
    name: str,
    have: Releases,
    *,
    prefix: str,
    releases_dir: PurePosixPath,
    artifact: Path,
    sha256: str,
    python: str,
    pip_options: Sequence[str],
    now: str,
) -> list[Step]:
    """Build the release directory with its own virtualenv; the marker file goes last.

    The venv is built in its final place (venvs cannot be moved); a directory without the
    marker is a release whose install was interrupted, and is rebuilt from scratch.
    """
    if name in have.names():
        return []
    rdir = rooted(prefix, releases_dir / name)
    remote_artifact = f"{rdir}/{artifact.name}"
    venv = f"{rdir}/venv"
    meta = json.dumps({"name": name, "installed_at": now, "artifact": artifact.name,
                       "sha256": sha256}, sort_keys=True)  # fmt: skip
    pip = " ".join(q(o) for o in pip_options)
    return [
        Shell(f"rm -rf {q(rdir)} && mkdir -p {q(rdir)}"),
        Upload(remote_artifact, source=artifact),
        Shell(f"{q(python)} -m venv --system-site-packages --without-pip {q(venv)}"),
        Shell(
            f"{q(python)} -m pip --python {q(venv + '/bin/python')} install --no-input "
            f"--disable-pip-version-check --no-warn-script-location {pip} {q(remote_artifact)}"
        ),
        Shell(f"printf '%s\\n' {q(meta)} > {q(rdir + '/.release.json')}"),
    ]


def plan_switch(
    target: str, have_current: str | None, *, prefix: str, link: PurePosixPath
) -> list[Step]:
    """Point ``current`` at ``target``: a new link, renamed over the old one (atomic)."""
    if have_current == target:
        return []
    path = rooted(prefix, link)
    tmp = f"{path}.tmp"
    rel = f"releases/{target}"
    # A release tried again gets a fresh chance: its old failure mark goes.
    unmark = q(f"{PurePosixPath(path).parent}/{rel}/.failed")
    return [Shell(f"rm -f {unmark} && ln -sfn {q(rel)} {q(tmp)} && mv -T {q(tmp)} {q(path)}")]


def previous_release(have: Releases, current: str | None) -> str | None:
    """The newest release installed before ``current`` that did not fail its health check."""
    names = have.names()
    older = names[: names.index(current)] if current in names else names
    good = [r.name for r in have.complete if r.name in older and not r.failed and r.name != current]
    return good[-1] if good else None


def releases_to_prune(have: Releases, keep_names: Sequence[str | None], keep: int) -> list[str]:
    """Releases beyond the newest ``keep``: never one of ``keep_names`` (current, previous);
    releases that failed their health check go first."""
    protected = [n for n in keep_names if n]
    newest = list(reversed(have.complete))
    ranked = [r.name for r in newest if not r.failed] + [r.name for r in newest if r.failed]
    survivors = [n for n in ranked if n in protected]
    for n in ranked:
        if len(survivors) >= keep:
            break
        if n not in survivors:
            survivors.append(n)
    return [n for n in have.names() if n not in survivors]


def plan_mark_failed(name: str, *, prefix: str, releases_dir: PurePosixPath) -> list[Step]:
    return [Shell(f"touch {q(rooted(prefix, releases_dir / name / '.failed'))}")]


def plan_prune(
    names: Sequence[str], incomplete: Sequence[str], *, prefix: str, releases_dir: PurePosixPath
) -> list[Step]:
    doomed = [*names, *incomplete]
    if not doomed:
        return []
    return [Shell("rm -rf " + " ".join(q(rooted(prefix, releases_dir / n)) for n in doomed))]

"""Our operations as pure functions: facts in, commands out.

Each ``*_fact_command`` is the shell a fact runs on the station, each ``parse_*`` turns its
output into a value, and each ``plan_*`` returns the steps still needed to reach the desired
state — an empty list when the station already has it, which is what makes a second run
change nothing. The runner (provisioning/operations.py) only feeds facts in and runs steps.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from provisioning.render import BLOCK_BEGIN, BLOCK_END, DirSpec, FileSpec

q = shlex.quote


@dataclass(frozen=True)
class Shell:
    command: str

    def describe(self) -> str:
        return self.command


@dataclass(frozen=True)
class Upload:
    """Copy bytes (or a local file) to ``dest`` on the station."""

    dest: str
    content: bytes | None = None
    source: Path | None = None

    def describe(self) -> str:
        what = f"{len(self.content)} bytes" if self.content is not None else "a local file"
        return f"upload {self.dest} ({what})"


Step = Shell | Upload


def rooted(prefix: str, path: PurePosixPath | str) -> str:
    """``path`` under the station's filesystem root (``prefix`` is '' for '/')."""
    return f"{prefix}{path}"


# -- files and directories -------------------------------------------------------------------


@dataclass(frozen=True)
class PathState:
    kind: str  # "file" | "dir" | "link" | "other"
    mode: int = 0
    uid: int = 0
    gid: int = 0
    sha256: str | None = None
    target: str | None = None


def paths_fact_command(paths: Sequence[str]) -> str:
    quoted = " ".join(q(p) for p in paths)
    return (
        f"for p in {quoted}; do "
        'if [ -L "$p" ]; then printf "L\\t%s\\t%s\\n" "$p" "$(readlink "$p")"; '
        'elif [ -f "$p" ]; then printf "F\\t%s\\t%s\\t%s\\n" "$p" "$(stat -c "%a %u %g" "$p")" '
        '"$(sha256sum < "$p" | cut -d" " -f1)"; '
        'elif [ -d "$p" ]; then printf "D\\t%s\\t%s\\n" "$p" "$(stat -c "%a %u %g" "$p")"; '
        'elif [ -e "$p" ]; then printf "O\\t%s\\n" "$p"; fi; done'
    )


def parse_paths(lines: Iterable[str]) -> dict[str, PathState]:
    out: dict[str, PathState] = {}
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        tag, path = parts[0], parts[1]
        if tag == "L":
            out[path] = PathState("link", target=parts[2])
        elif tag in ("F", "D"):
            mode, uid, gid = parts[2].split()
            out[path] = PathState(
                "file" if tag == "F" else "dir",
                int(mode, 8),
                int(uid),
                int(gid),
                parts[3] if tag == "F" else None,
            )
        elif tag == "O":
            out[path] = PathState("other")
    return out


@dataclass(frozen=True)
class Accounts:
    users: dict[str, tuple[int, int]]  # name -> (uid, primary gid)
    groups: dict[str, tuple[int, frozenset[str]]]  # name -> (gid, members)

    def uid(self, name: str) -> int | str:
        return 0 if name == "root" else self.users.get(name, (name, 0))[0]

    def gid(self, name: str) -> int | str:
        return 0 if name == "root" else self.groups.get(name, (name, frozenset()))[0]


def accounts_fact_command(prefix: str) -> str:
    return (
        f"cat {q(rooted(prefix, '/etc/passwd'))} 2>/dev/null; echo '--groups--'; "
        f"cat {q(rooted(prefix, '/etc/group'))} 2>/dev/null; true"
    )


def parse_accounts(lines: Iterable[str]) -> Accounts:
    users: dict[str, tuple[int, int]] = {}
    groups: dict[str, tuple[int, frozenset[str]]] = {}
    in_groups = False
    for raw in lines:
        line = raw.strip()
        if line == "--groups--":
            in_groups = True
            continue
        parts = line.split(":")
        if in_groups and len(parts) >= 4:
            groups[parts[0]] = (int(parts[2]), frozenset(m for m in parts[3].split(",") if m))
        elif not in_groups and len(parts) >= 7:
            users[parts[0]] = (int(parts[2]), int(parts[3]))
    return Accounts(users, groups)


def _owner(accounts: Accounts, owner: str, group: str) -> str:
    return f"{accounts.uid(owner)}:{accounts.gid(group)}"


def plan_directory(
    spec: DirSpec, have: PathState | None, accounts: Accounts, prefix: str
) -> list[Step]:
    path = q(rooted(prefix, spec.path))
    owner = _owner(accounts, spec.owner, spec.group)
    if have is None:
        return [Shell(f"mkdir -p {path} && chown {owner} {path} && chmod {spec.mode:o} {path}")]
    if have.kind != "dir":
        raise ValueError(f"{rooted(prefix, spec.path)} exists and is not a directory")
    steps: list[Step] = []
    if have.mode != spec.mode:
        steps.append(Shell(f"chmod {spec.mode:o} {path}"))
    if f"{have.uid}:{have.gid}" != owner:
        steps.append(Shell(f"chown {owner} {path}"))
    return steps


def spec_bytes(spec: FileSpec) -> bytes:
    if spec.content is not None:
        return spec.content
    assert spec.source is not None
    return spec.source.read_bytes()


def plan_file(
    spec: FileSpec,
    have: PathState | None,
    accounts: Accounts,
    prefix: str,
    parent_exists: bool = False,
) -> list[Step]:
    """Write the file when its content differs (atomically, modes set before it appears)."""
    dest = rooted(prefix, spec.path)
    owner = _owner(accounts, spec.owner, spec.group)
    digest = hashlib.sha256(spec_bytes(spec)).hexdigest()
    if have is not None and have.kind == "file" and have.sha256 == digest:
        steps: list[Step] = []
        if have.mode != spec.mode:
            steps.append(Shell(f"chmod {spec.mode:o} {q(dest)}"))
        if f"{have.uid}:{have.gid}" != owner:
            steps.append(Shell(f"chown {owner} {q(dest)}"))
        return steps
    tmp = f"{dest}.provision-tmp"
    mkdir = [] if parent_exists else [Shell(f"mkdir -p {q(str(PurePosixPath(dest).parent))}")]
    return [
        *mkdir,
        Upload(tmp, content=spec.content, source=spec.source),
        Shell(
            f"chown {owner} {q(tmp)} && chmod {spec.mode:o} {q(tmp)} && mv -f {q(tmp)} {q(dest)}"
        ),
    ]


def file_diff(path: str, old: bytes | None, new: bytes) -> str:
    """A unified diff of a text file (the caller never passes secrets here)."""
    a = [] if old is None else old.decode("utf-8", "replace").splitlines(keepends=True)
    b = new.decode("utf-8", "replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, f"{path} (station)", f"{path} (wanted)"))


# -- packages, groups, the service user ------------------------------------------------------


def packages_fact_command(packages: Sequence[str]) -> str:
    names = " ".join(q(p) for p in packages)
    return f"dpkg-query -W -f='${{Package}}\\t${{db:Status-Status}}\\n' {names} 2>/dev/null; true"


def parse_packages(lines: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for line in lines:
        parts = line.strip().split("\t")
        if len(parts) == 2 and parts[1] == "installed":
            out.add(parts[0].split(":")[0])
    return out


def plan_packages(wanted: Sequence[str], installed: set[str]) -> list[Step]:
    missing = [p for p in wanted if p not in installed]
    if not missing:
        return []
    env = "DEBIAN_FRONTEND=noninteractive"
    return [
        Shell(
            f"{env} apt-get update -q && {env} apt-get install -y -q --no-install-recommends "
            + " ".join(q(p) for p in missing)
        )
    ]


def plan_account(
    user: str, groups: Sequence[str], accounts: Accounts, prefix: str, home: PurePosixPath
) -> list[Step]:
    """Create missing groups, the service user and its memberships."""
    root_opt = f" --root {q(prefix)}" if prefix else ""
    steps: list[Step] = [
        Shell(f"groupadd{root_opt} --system {q(g)}") for g in groups if g not in accounts.groups
    ]
    if user not in accounts.users:
        steps.append(
            Shell(
                f"useradd{root_opt} --system --user-group --no-create-home "
                f"--home-dir {q(str(home))} --shell /usr/sbin/nologin "
                f"--groups {q(','.join(groups))} {q(user)}"
            )
        )
        return steps
    missing = [g for g in groups if user not in accounts.groups.get(g, (0, frozenset()))[1]]
    if missing:
        steps.append(Shell(f"usermod{root_opt} --append --groups {q(','.join(missing))} {q(user)}"))
    return steps


# -- boot configuration ----------------------------------------------------------------------


def boot_fact_command(prefix: str, candidates: Sequence[PurePosixPath]) -> str:
    paths = " ".join(q(rooted(prefix, c)) for c in candidates)
    return (
        f'for p in {paths}; do if [ -f "$p" ]; then echo "$p"; base64 -w0 < "$p"; echo; '
        "break; fi; done"
    )


def parse_boot(lines: Sequence[str]) -> tuple[str, bytes] | None:
    lines = [line.strip() for line in lines if line.strip()]
    if not lines:
        return None
    body = base64.b64decode(lines[1]) if len(lines) > 1 else b""
    return lines[0], body


def edit_boot_config(current: str, fragment: str) -> str:
    """``current`` with our block (at the end, under ``[all]``) holding exactly ``fragment``.

    Every earlier block of ours is removed first, and a stray marker line with it, so the
    edit is idempotent whatever a person did to the file by hand.
    """
    kept: list[str] = []
    block: list[str] | None = None  # lines inside a block of ours, until its end marker
    for line in current.splitlines():
        if line == BLOCK_BEGIN:
            if block is not None:
                kept += block  # an earlier begin without an end: those lines are not ours
            block = []
        elif line == BLOCK_END:
            block = None
        elif block is not None:
            block.append(line)
        else:
            kept.append(line)
    if block is not None:
        kept += block
    while kept and not kept[-1].strip():
        kept.pop()
    ours = [BLOCK_BEGIN, "[all]", *fragment.strip().splitlines(), BLOCK_END]
    return "\n".join([*kept, "", *ours] if kept else ours) + "\n"


def plan_boot(path: str, current: bytes, fragment: str) -> list[Step]:
    """Replace the boot config by rename in its own directory (FAT has no modes or owners)."""
    new = edit_boot_config(current.decode("utf-8", "replace"), fragment).encode()
    if new == current:
        return []
    tmp = f"{path}.provision-tmp"
    return [Upload(tmp, content=new), Shell(f"sync {q(tmp)} 2>/dev/null; mv -f {q(tmp)} {q(path)}")]


# -- systemd ---------------------------------------------------------------------------------


def units_fact_command(units: Sequence[str], query: str, prefix: str = "") -> str:
    """``systemctl is-enabled`` / ``is-active`` per unit, one ``unit<TAB>state`` line each."""
    root_opt = f" --root={q(prefix)}" if prefix else ""
    names = " ".join(q(u) for u in units)
    return (
        f'for u in {names}; do printf "%s\\t%s\\n" "$u" '
        f'"$(systemctl{root_opt} {query} "$u" 2>/dev/null)"; done'
    )


def parse_units(lines: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        if parts[0]:
            out[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return out


def plan_enable(units: Sequence[str], enabled: dict[str, str], prefix: str = "") -> list[Step]:
    todo = [u for u in units if enabled.get(u) not in ("enabled", "static", "alias")]
    if not todo:
        return []
    root_opt = f" --root={q(prefix)}" if prefix else ""
    return [Shell(f"systemctl{root_opt} enable " + " ".join(q(u) for u in todo))]


def plan_services(units: Sequence[str], active: dict[str, str], restart: bool) -> list[Step]:
    """Restart everything after a change; otherwise start only what is not running."""
    if restart:
        return [Shell("systemctl restart " + " ".join(q(u) for u in units))]
    todo = [u for u in units if active.get(u) != "active"]
    return [Shell("systemctl start " + " ".join(q(u) for u in todo))] if todo else []


# -- one round trip for every fact -----------------------------------------------------------


def snapshot_command(sections: dict[str, str]) -> str:
    """One script printing each section's output after an ``@@name@@`` line."""
    return "; ".join(f"echo '@@{name}@@'; {{ {script}; }} 2>/dev/null" for name, script in
                     sections.items()) + "; true"  # fmt: skip


def split_sections(lines: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("@@") and stripped.endswith("@@") and len(stripped) > 4:
            current = out.setdefault(stripped[2:-2], [])
        elif current is not None:
            current.append(line)
    return out

"""Resource limits of one grading sandbox: memory, processes, file size (``make grade``).

The grader starts each sandbox through ``python -m utils.course.limits [options] -- bwrap ...``
(:func:`wrap`): this small launcher, still outside the sandbox, puts itself into a fresh
control group when it can and sets resource limits, then ``exec`` s bubblewrap, whose
processes inherit both:

- **control group** (cgroup v2, or the v1 ``memory`` and ``pids`` hierarchies; needs a
  writable ``/sys/fs/cgroup``, e.g. the grader runs as root or in a delegated systemd scope):
  ``memory`` for the whole sandbox (the kernel's OOM killer ends the learner's kernel when it
  is exceeded) and ``pids`` for processes *and threads*;
- otherwise **rlimits**: ``RLIMIT_AS`` per process for memory, and ``RLIMIT_NPROC`` (it
  counts every process of the user, and Linux does not apply it to root: stated in the log);
- always ``RLIMIT_FSIZE`` (no file larger than the output limit: a disk bomb stops there) and
  ``RLIMIT_CORE`` = 0.

:func:`describe` says which of these applied, so the grading log shows it. Written here
because ``systemd-run --scope`` needs a user systemd (absent in containers and CI) and
``prlimit`` cannot set control groups.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Limits:
    """Per-sandbox limits; 0 means no limit."""

    memory_mb: int = 4096
    processes: int = 512
    file_mb: int = 256

    def argv(self) -> list[str]:
        return ["--memory-mb", str(self.memory_mb), "--processes", str(self.processes),
                "--file-mb", str(self.file_mb)]


def add_arguments(parser) -> None:
    """The ``--memory-mb``, ``--processes`` and ``--file-mb`` options of every grading command."""
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_mb,
                        help="memory per sandbox in MB (0: no limit)")
    parser.add_argument("--processes", type=int, default=Limits.processes,
                        help="processes and threads per sandbox (0: no limit)")
    parser.add_argument("--file-mb", type=int, default=Limits.file_mb,
                        help="largest file a sandbox may write, in MB (0: no limit)")


def from_arguments(args) -> Limits:
    """The :class:`Limits` that :func:`add_arguments`' options ask for."""
    return Limits(args.memory_mb, args.processes, args.file_mb)


def _own_cgroups() -> dict[str, str]:
    """``{controller or "": path}`` of this process (``""`` is the cgroup v2 entry)."""
    out = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            out[controller] = path
    return out


def _v1_dir(controller: str, own: dict[str, str]) -> Path | None:
    mount = CGROUP_ROOT / controller
    if controller not in own or not (mount / "cgroup.procs").exists():
        return None
    return mount / own[controller].lstrip("/")


def make_cgroups(limits: Limits) -> list[Path]:
    """Create control groups with ``limits`` for this process; returns their folders (empty
    when none could be made: the caller falls back on rlimits)."""
    own = _own_cgroups()
    name = f"grade-sandbox-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    made: list[Path] = []
    try:
        memory, pids = _v1_dir("memory", own), _v1_dir("pids", own)
        if memory is not None and pids is not None:
            for parent in (memory, pids):
                (parent / name).mkdir()
                made.append(parent / name)
            if limits.memory_mb:
                (memory / name / "memory.limit_in_bytes").write_text(
                    str(limits.memory_mb * 1024 * 1024))
                swap = memory / name / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(str(limits.memory_mb * 1024 * 1024))
            if limits.processes:
                (pids / name / "pids.max").write_text(str(limits.processes))
        elif "" in own and (CGROUP_ROOT / "cgroup.controllers").exists():
            parent = CGROUP_ROOT / own[""].lstrip("/")
            (parent / name).mkdir()
            made.append(parent / name)
            if not {"memory", "pids"} <= set((parent / name / "cgroup.controllers")
                                             .read_text().split()):
                raise OSError("memory and pids controllers not delegated")
            if limits.memory_mb:
                (parent / name / "memory.max").write_text(str(limits.memory_mb * 1024 * 1024))
                (parent / name / "memory.swap.max").write_text("0")
            if limits.processes:
                (parent / name / "pids.max").write_text(str(limits.processes))
        else:
            return []
        for folder in made:
            (folder / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                pass
        return []
    return made


def peak_memory_mb(folders: Sequence[Path]) -> float | None:
    """Peak memory of a finished sandbox's control group (MB), when the kernel reports it."""
    for folder in folders:
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            path = Path(folder) / name
            if path.exists():
                try:
                    return int(path.read_text().split()[0]) / 1024 / 1024
                except (OSError, ValueError):
                    pass
    return None


def remove_cgroups(folders: Sequence[Path]) -> None:
    """Remove the (now empty) control groups of a finished sandbox."""
    for folder in folders:
        try:
            Path(folder).rmdir()
        except OSError:
            pass


def set_rlimits(limits: Limits, memory: bool, processes: bool) -> list[str]:
    """Set the rlimits (see the module docstring); returns what was set, for the log."""
    done = []

    def limit(kind: int, value: int, label: str) -> None:
        soft, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, value))
        done.append(label)

    limit(resource.RLIMIT_CORE, 0, "no core files")
    if limits.file_mb:
        limit(resource.RLIMIT_FSIZE, limits.file_mb * 1024 * 1024,
              f"files <= {limits.file_mb} MB")
    if memory and limits.memory_mb:
        limit(resource.RLIMIT_AS, limits.memory_mb * 1024 * 1024,
              f"address space <= {limits.memory_mb} MB per process")
    if processes and limits.processes:
        if os.geteuid() == 0:
            done.append("process limit NOT applied (root ignores RLIMIT_NPROC and no control "
                        "group could be made)")
        else:
            limit(resource.RLIMIT_NPROC, limits.processes, f"<= {limits.processes} processes "
                  f"of this user")
    return done


def wrap(limits: Limits, argv: Sequence[str], cgroup_file: Path) -> list[str]:
    """The command line that runs ``argv`` under ``limits``; the control-group folders made
    are written to ``cgroup_file`` (one per line) for :func:`peak_memory_mb` and cleanup."""
    return [sys.executable, "-m", "utils.course.limits", *limits.argv(), "--cgroup-file",
            str(cgroup_file), "--", *argv]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="run a command under the sandbox limits")
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--processes", type=int, default=0)
    parser.add_argument("--file-mb", type=int, default=0)
    parser.add_argument("--cgroup-file", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    limits = Limits(args.memory_mb, args.processes, args.file_mb)
    folders = make_cgroups(limits) if (limits.memory_mb or limits.processes) else []
    args.cgroup_file.write_text("".join(f"{f}\n" for f in folders))
    done = (["control group: memory <= %d MB, <= %d processes and threads"
             % (limits.memory_mb, limits.processes)] if folders else [])
    done += set_rlimits(limits, memory=not folders, processes=not folders)
    print("sandbox limits: " + "; ".join(done), flush=True)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()

"""The README's tour, run the way a newcomer runs it: the daemon started as ``make run``
starts it (the Makefile's own commands, on the shipped config), then every command of the
README's tour blocks pasted into one bash session, in order.

It changes only what would clash with other tests or tie the result to the date: the
config is a copy in a temporary directory (so ``./run`` and ``./var`` are fresh), the
metrics endpoint takes a free port, and the demo campaign's holidays are dropped (on them
it calls nobody and the tour's ``next`` finds nothing, as the README says). The callback
date is the README's own business: it computes one that is always ahead and callable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import nextcall
from nextcall.client import Client, ClientError

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"
#: the environment's bin directory: its ``nextcall`` is the one ``make run`` installs
BIN = Path(sys.executable).parent
#: the comment that marks a README code block as part of the tour
TOUR_MARK = "<!-- tour"
#: ``make run DEMO_RECORDS=...``: enough records for every timezone, loaded in a moment
DEMO_RECORDS = 280
#: the make targets ``make run`` goes through, in the order their recipes run
RUN_TARGETS = ("migrate", "demo", "run")
STARTUP_S = 30


def tour_commands(readme: str) -> list[str]:
    """The shell commands of every ```` ```sh ```` block that follows a tour marker.

    Blank lines and comment lines are dropped and backslash continuations joined; what is
    left is what a reader pastes, one command per item.
    """
    commands: list[str] = []
    for block in re.findall(rf"^{re.escape(TOUR_MARK)}[^\n]*-->\n```sh\n(.*?)^```",
                            readme, flags=re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def make_run_commands(makefile: str, config: str, demo_records: int) -> list[list[str]]:
    """The ``nextcall`` commands of ``make run``'s recipes, with the make variables that
    ``make run CONFIG=... DEMO_RECORDS=...`` would set filled in."""
    recipes: dict[str, list[str]] = {}
    target = ""
    for line in makefile.splitlines():
        if line.startswith("\t"):
            recipes.setdefault(target, []).append(line.strip())
        elif re.match(r"^[\w.$()-]+:", line):
            target = line.split(":", 1)[0]
    values = {"$(BIN)": str(BIN), "$(CONFIG)": config, "$(DEMO_RECORDS)": str(demo_records)}
    commands = []
    for name in RUN_TARGETS:
        for line in recipes.get(name, []):
            line = line.removeprefix("exec ")
            if not line.startswith("$(BIN)/nextcall "):
                continue  # the hint it echoes
            for var, value in values.items():
                line = line.replace(var, value)
            commands.append(line.split())
    return commands


@dataclass
class Demo:
    """A ``make run`` daemon in its own directory, and the environment to reach it."""

    cwd: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path


def _copy_config(cwd: Path) -> None:
    """The shipped config in ``cwd/config``, with a free metrics port and no holidays."""
    shutil.copytree(REPO / "config", cwd / "config")
    main = cwd / "config" / "nextcall.toml"
    main.write_text(re.sub(r'(?m)^address = "127\.0\.0\.1:9464"$', 'address = "127.0.0.1:0"',
                           main.read_text()))
    demo = cwd / "config" / "campaigns" / "demo.toml"
    demo.write_text(re.sub(r"(?m)^holidays = .*$", "", demo.read_text()))


def _environment(cwd: Path) -> dict[str, str]:
    """The test's environment, minus what would point the CLI elsewhere; ``nextcall``
    runs the code under test, and ``. .venv/bin/activate`` puts it on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NEXTCALL_CONFIG", "NEXTCALL_SOCKET", "COLUMNS", "LINES")}
    source_root = str(Path(nextcall.__file__).resolve().parents[1])
    paths = [source_root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                            if p and p != source_root)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    activate = cwd / ".venv" / "bin" / "activate"
    activate.parent.mkdir(parents=True)
    activate.write_text(f'export PATH="{BIN}:$PATH"\n')
    return env


def _wait_serving(demo: Demo) -> None:
    socket = str(demo.cwd / "run" / "nextcall.sock")
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if demo.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited:\n{demo.log.read_text()}")
        try:
            with Client(socket, timeout=2) as c:
                c.call("ping")
                return
        except (OSError, ClientError):
            time.sleep(0.05)
    raise RuntimeError(f"the daemon did not start:\n{demo.log.read_text()}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The daemon ``make run`` starts: migrate, load the demo campaign, serve."""
    cwd = tmp_path_factory.mktemp("tour")
    _copy_config(cwd)
    env = _environment(cwd)
    *setup, serve = make_run_commands(MAKEFILE.read_text(), "config/nextcall.toml",
                                      DEMO_RECORDS)
    assert [c[-1] for c in setup] + [serve[-1]] == ["migrate", str(DEMO_RECORDS), "serve"]
    for command in setup:
        done = subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=60)
        assert done.returncode == 0, done.stderr
    log = cwd / "daemon.log"
    with log.open("wb") as out:  # a file: an unread pipe could fill up and stall it
        proc = subprocess.Popen(serve, cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    running = Demo(cwd, env, proc, log)
    try:
        _wait_serving(running)
        yield running
    finally:
        proc.terminate()
        proc.wait(30)


@dataclass
class Step:
    """One tour command, its exit status (None: never ran) and its output."""

    command: str
    returncode: int | None
    out: str
    err: str


def run_in_one_shell(commands: list[str], demo: Demo) -> list[Step]:
    """Each command in turn in one bash session (variables carry over, as in a terminal),
    with its own output and exit status; the session stops at the first failure."""
    steps_dir = demo.cwd / "steps"
    steps_dir.mkdir(exist_ok=True)
    script = []
    for i, command in enumerate(commands):
        # the newline before "}" keeps a trailing comment from swallowing it
        script.append(f'{{ {command}\n}} >"{steps_dir}/{i}.out" 2>"{steps_dir}/{i}.err"\n'
                      f'rc=$?; echo $rc >"{steps_dir}/{i}.rc"; [ $rc -eq 0 ] || exit $rc\n')
    # the exit statuses are read from the files: the first failure is reported with its
    # command and output
    subprocess.run(["bash", "-c", "".join(script)], check=False, cwd=demo.cwd, env=demo.env,
                   stdin=subprocess.DEVNULL, timeout=120)
    steps = []
    for i, command in enumerate(commands):
        rc = steps_dir / f"{i}.rc"
        steps.append(Step(command, int(rc.read_text()) if rc.exists() else None,
                          (steps_dir / f"{i}.out").read_text() if rc.exists() else "",
                          (steps_dir / f"{i}.err").read_text() if rc.exists() else ""))
    return steps


def _output(steps: list[Step], fragment: str) -> str:
    """The output of the one tour command that contains ``fragment``."""
    found = [s.out for s in steps if fragment in s.command]
    assert len(found) == 1, f"{len(found)} tour commands contain {fragment!r}"
    return found[0]


def test_the_readme_tour_runs_as_written(demo: Demo) -> None:
    commands = tour_commands(README.read_text())
    assert len(commands) >= 8, commands
    steps = run_in_one_shell(commands, demo)
    for step in steps:
        assert step.returncode == 0, (f"`{step.command}` exited {step.returncode}:\n"
                                      f"{step.out}{step.err}")

    assert "alice logged in to demo" in _output(steps, "nextcall login")
    lease = _output(steps, "nextcall next --agent alice)")
    assert re.search(r"(?m)^lease\s+\d+\.\S+ *$", lease), lease
    assert re.search(r"(?m)^record\s+demo-\d{6}\s+\(pool, attempt 1\) *$", lease), lease
    record = re.search(r"demo-\d{6}", lease)
    assert record is not None
    assert re.fullmatch(rf"{record[0]}: NA -> ready, due at \S+Z, attempt 1\n",
                        _output(steps, '"$token" NA')), "the no-answer disposition"
    assert re.fullmatch(r"demo-\d{6}: CB -> callback, due at \S+Z, attempt 1\n",
                        _output(steps, '"$token" CB')), "the callback disposition"
    history = _output(steps, "nextcall get")
    assert f"record {record[0]}" in history
    assert re.search(r"\balice\b.*\bNA\b", history), history
    assert "active leases" in _output(steps, "nextcall stats")
    assert "Callback requested" in _output(steps, "nextcall campaigns")


def test_stats_headers_are_whole_when_stdout_is_not_a_terminal(demo: Demo) -> None:
    # stdin and stderr are no terminal either: rich takes the width from any of the three
    done = subprocess.run([str(BIN / "nextcall"), "stats"], check=False, cwd=demo.cwd,
                          env=demo.env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if "campaign" in line)
    for word in ("due", "later", "cb due", "cb later", "leased", "closed", "zones open"):
        assert f" {word} " in header, (word, done.stdout)
    assert "…" not in done.stdout

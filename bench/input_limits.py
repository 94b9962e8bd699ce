"""Bounded cost on bad input: figures for the YAML alias bomb, catastrophic regexes and a sleeping query.

    .venv/bin/python bench/input_limits.py

Each figure is measured in a child process (so a runaway baseline cannot take this one down) and printed next
to its baseline in the same run: the previous definitions loader (from git, commit BASELINE) and Python's
backtracking `re`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "0ca4685"  # the last commit before the bounded loader
CHILD_TIMEOUT = 120


def bomb(levels: int) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghijk"[: levels - 1]:
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


LOAD = """
import importlib.util, resource, sys, time
spec = importlib.util.spec_from_file_location("loader", sys.argv[1])
loader = importlib.util.module_from_spec(spec); sys.modules["loader"] = loader; spec.loader.exec_module(loader)
text = open(sys.argv[2]).read()
t = time.perf_counter()
located, problems = loader.load_text(text, "bomb.yaml")
print(f"{time.perf_counter() - t:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} "
      f"{'refused' if problems else 'loaded'}")
"""


def child(args: list[str]) -> str:
    try:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"> {CHILD_TIMEOUT} s (stopped)"
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1]


def yaml_figures(tmp: Path) -> None:
    old = tmp / "old_yamlfile.py"
    old.write_text(
        subprocess.run(
            ["git", "show", f"{BASELINE}:src/metricloop/definitions/yamlfile.py"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    new = ROOT / "src" / "metricloop" / "definitions" / "yamlfile.py"
    print("YAML alias bomb (9 aliases of 9 per level): seconds, peak RSS of the child (MB), outcome")
    print(f"{'levels':>6} {'bytes':>6} {'values':>13}  {'bounded loader':<26} previous loader")
    for levels in (5, 6, 7, 9):
        f = tmp / f"bomb{levels}.yaml"
        f.write_text(bomb(levels))
        ours = child(["-c", LOAD, str(new), str(f)])
        theirs = child(["-c", LOAD, str(old), str(f)])
        print(f"{levels:>6} {f.stat().st_size:>6} {9**levels:>13,}  {ours:<26} {theirs}")


REGEX = """
import sys, time, re
import re2
n = int(sys.argv[1])
pattern, text = "(x+x+)+y", "x" * n
t = time.perf_counter(); re2.compile(pattern).fullmatch(text); ours = time.perf_counter() - t
t = time.perf_counter(); re.fullmatch(pattern, text); theirs = time.perf_counter() - t
print(f"{ours * 1e6:.0f} {theirs * 1e6:.0f}")
"""


def regex_figures() -> None:
    print("\nMatcher regex '(x+x+)+y' against n x's (microseconds): RE2 vs Python re")
    for n in (16, 20, 22, 24):
        out = child(["-c", REGEX, str(n)])
        ours, theirs = (int(x) for x in out.split()) if "stopped" not in out else (0, 0)
        print(f"  n={n:>2}  RE2 {ours:>8,}   re {theirs:>12,}   ratio {theirs / max(ours, 1):>10,.0f}x")


def timeout_figures() -> None:
    from metricloop.definitions.schemas import SQLSourceSpec
    from metricloop.errors import SourceError
    from metricloop.sources.sql import SQLSource

    print("\nstatement_timeout: 1s on PostgreSQL, SELECT pg_sleep(90)")
    source = SQLSource(SQLSourceSpec(name="pg", type="sql", url="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                                     statement_timeout="1s"))  # fmt: skip
    t = time.perf_counter()
    try:
        source.query("SELECT pg_sleep(90)")
        print("  not cancelled")
    except SourceError as e:
        print(f"  cancelled after {time.perf_counter() - t:.2f} s: {e}")
    finally:
        source.close()


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        yaml_figures(Path(d))
    regex_figures()
    timeout_figures()

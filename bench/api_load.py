"""Load the API of `metricloop serve` on the demo workspace: requests per second and latency, 1 and 8 connections.

    .venv/bin/python bench/api_load.py                       # this checkout
    .venv/bin/python bench/api_load.py --baseline main       # and, side by side, the code of git ref `main`
    .venv/bin/python bench/api_load.py --client httpx --duration 5 --connections 1,8,16

It builds (once, cached in bench/data/api-demo) the demo workspace at scale 0.1, copies it, starts
`metricloop serve` on it on a free 127.0.0.1 port (the real server: uvicorn, the scheduler and the
dispatcher threads), and drives each endpoint with the demo's operator token for `--duration` seconds
per connection count (the best of --repeat tries), and reports the server process's CPU time per request
too, which other work on the machine moves less than the rates. The scheduler's first round (every due
monitor, at start) is waited out first. The client is `wrk` when it is installed (apt-get install wrk),
else an httpx async loop (which costs CPU on the same cores, so its figures are lower). With `--baseline REF` the
source of REF (git archive) is served from the same workspace copy, one server after the other, and
the ratio is printed. It prints figures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
DEMO = DATA / "api-demo"
ENDPOINTS = {
    "incidents": "/api/incidents",
    "series_by_region": "/api/metrics/gmv/series?by=region",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_demo() -> Path:
    if (DEMO / ".api_token").exists():
        return DEMO
    DATA.mkdir(parents=True, exist_ok=True)
    print(f"building the demo workspace in {DEMO} (scale 0.1, once)…", flush=True)
    subprocess.run(
        [sys.executable, "-m", "metricloop", "demo", str(DEMO), "--no-serve"],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return DEMO


def source_of(ref: str) -> Path:
    """The src/ folder of git ref `ref`, unpacked under bench/data/src-REF."""
    sha = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    out = DATA / f"src-{sha.strip()[:12]}"
    if not (out / "src" / "metricloop").exists():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha.strip(), "src"], cwd=ROOT, check=True, capture_output=True)
        with tempfile.NamedTemporaryFile(suffix=".tar") as f:
            f.write(archive.stdout)
            f.flush()
            with tarfile.open(f.name) as tar:
                tar.extractall(out, filter="data")
    return out / "src"


class Server:
    def __init__(self, home: Path, src: Path | None) -> None:
        self.port = free_port()
        env = {**os.environ, "METRICLOOP_HOME": str(home), "METRICLOOP_PORT": str(self.port)}
        env.pop("METRICLOOP_BASE_URL", None)
        if src is not None:
            env["PYTHONPATH"] = str(src)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "metricloop", "serve"],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"metricloop serve ended with {self.proc.returncode}")
            time.sleep(0.2)
        raise SystemExit("metricloop serve did not answer within 60 s")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (all its threads) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def settle(self, token: str, timeout: float = 300) -> None:
        """Wait for the scheduler's first round (it runs every due monitor at start) to end, so that it does not
        share the CPU with the measured requests."""
        import httpx

        monitors = len(httpx.get(self.base + "/api/monitors", headers={"Authorization": f"Bearer {token}"}).json())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = httpx.get(self.base + "/api/runs", params={"limit": 200},
                             headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
            scheduled = {r["monitor"] for r in runs if r["trigger"] in ("schedule", "catchup")}
            if len(scheduled) >= monitors and not any(r["status"] == "running" for r in runs):
                return
            time.sleep(1)
        print("  (the scheduler was still running monitors when the measurement began)")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def pad_incidents(state_db: Path, total: int) -> None:
    """Copy the demo's incidents (as resolved ones, which no timer or escalation touches) until the workspace holds
    `total`, so the list answers full pages (its default limit is 100) instead of the demo's handful."""
    import sqlite3

    with sqlite3.connect(state_db) as db:
        have = db.execute("SELECT count(*) FROM incidents").fetchone()[0]
        cols = [r[1] for r in db.execute("PRAGMA table_info(incidents)") if r[1] != "id"]
        picked = ", ".join("'resolved'" if c == "state" else ("group_key || '-' || ?" if c == "group_key" else c)
                           for c in cols)
        for n in range(max(0, total - have)):
            db.execute(f"INSERT INTO incidents ({', '.join(cols)}) SELECT {picked} FROM incidents "
                       f"ORDER BY id LIMIT 1 OFFSET ?", (n, n % have))


def run_wrk(url: str, token: str, connections: int, duration: float) -> dict:
    threads = min(connections, 2)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "30s",
         "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "bad": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(1) if errors else "", "requests": requests}


def run_httpx(url: str, token: str, connections: int, duration: float) -> dict:
    import httpx

    async def main() -> dict:
        lat: list[float] = []
        bad = 0
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30) as c:
            end = time.perf_counter() + duration

            async def worker() -> None:
                nonlocal bad
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    r = await c.get(url)
                    lat.append((time.perf_counter() - t0) * 1000)
                    bad += r.status_code != 200

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.perf_counter() - t0
        lat.sort()
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return {"rps": len(lat) / elapsed, "p50": lat[len(lat) // 2], "p99": p99, "bad": bad, "errors": "",
                "requests": len(lat)}

    return asyncio.run(main())


def measure(label: str, src: Path | None, args, token: str) -> dict:
    home = Path(tempfile.mkdtemp(prefix="ml-api-load-"))
    shutil.copytree(DEMO, home, dirs_exist_ok=True)
    if args.incidents:
        pad_incidents(home / "state.db", args.incidents)
    server = Server(home, src)
    results = {}
    try:
        server.settle(token)
        client = run_wrk if args.client == "wrk" else run_httpx
        for name, path in ENDPOINTS.items():
            url = server.base + path
            client(url, token, 1, 1.0)  # warm up: imports, caches, the first query
            for n in args.connections:
                tries = []
                for _ in range(args.repeat):  # the best of a few: other work on the machine only ever slows it
                    cpu = server.cpu_seconds()
                    r = client(url, token, n, args.duration)
                    r["cpu_ms"] = (server.cpu_seconds() - cpu) * 1000 / max(1, r["requests"])
                    tries.append(r)
                r = max(tries, key=lambda t: t["rps"])
                results[(name, n)] = r
                extra = f"  ({r['bad']} non-200{', socket errors ' + r['errors'] if r['errors'] else ''})" if (
                    r["bad"] or r["errors"]) else ""
                print(f"{label:>10}  {name:<17} c={n:<3} {r['rps']:8.1f} req/s   p50 {r['p50']:7.1f} ms   "
                      f"p99 {r['p99']:7.1f} ms   server CPU {r['cpu_ms']:6.2f} ms/req{extra}", flush=True)
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per endpoint and connection count")
    ap.add_argument("--connections", default="1,8", help="comma-separated connection counts")
    ap.add_argument("--client", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx")
    ap.add_argument("--repeat", type=int, default=3, help="measure each point this often and keep the best")
    ap.add_argument("--incidents", type=int, default=0,
                    help="pad the workspace copy to this many incidents (the demo has a handful; 100 = a full page)")
    ap.add_argument("--baseline", metavar="REF", help="also serve the code of this git ref, for a ratio")
    args = ap.parse_args()
    args.connections = [int(c) for c in args.connections.split(",")]
    build_demo()
    token = (DEMO / ".api_token").read_text().strip()
    print(f"incidents in the workspace: {args.incidents or 'as built by the demo'}; "
          f"client {args.client}, best of {args.repeat} × {args.duration:g} s per point, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    runs = [("this", None)]
    if args.baseline:
        runs.insert(0, (args.baseline, source_of(args.baseline)))
    results = {label: measure(label, src, args, token) for label, src in runs}
    if args.baseline:
        print("\nratio (this / baseline), req/s:")
        for key, r in results["this"].items():
            b = results[args.baseline][key]
            ratio = r["rps"] / b["rps"]
            print(f"  {key[0]:<17} c={key[1]:<3} {ratio:6.2f}×  p99 {b['p99']:.1f} → {r['p99']:.1f} ms  "
                  f"CPU {b['cpu_ms']:.2f} → {r['cpu_ms']:.2f} ms/req")


if __name__ == "__main__":
    main()

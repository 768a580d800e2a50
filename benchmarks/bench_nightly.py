"""The nightly run through Dagster against the NDJSON parse floor (issue 7).

Run: ``.venv/bin/python benchmarks/bench_nightly.py --events 1000000 --clients 30 300``
(``--smoke`` for a seconds-long check; ``--help`` for the rest).

For each size (events x clients), one activity day (2026-03-10) is generated with
``billing generate --no-ledger`` once and kept under ``OUT/nightly-<E>e-<C>c/``. Then, each in
a fresh subprocess so that its peak RSS and CPU are its own, ``--repeat`` times:

- **floor**: a bare ``polars.read_ndjson`` of every landing file with a fixed schema
  (``bench_ingest.work_floor``: the one definition of the floor);
- **nightly**: ``runner.run_billing`` for that day, what ``billing run`` does, on a fresh
  SQLite Dagster instance and an empty outputs directory: the ingest run (``landing_files``
  then ``activity``), charges, invoices and reconciliation runs, every asset materialized
  through Dagster with its checks. (The ``billing_nightly`` schedule on a daemon runs the
  same assets, one run per stage chained by sensors, each run in a process of its own.)

Stage seconds come from the Dagster event log of those runs (STEP_START to STEP_SUCCESS);
"outside compute" is the wall time of ``run_billing`` minus the sum of every step's
duration: run setup, event-log writes, sensors' work done inline, reports. CPU seconds of
each run are ``getrusage`` (self + reaped children) around it, and of the floor around its
reads; the table gives the night's and ingest's CPU against the floor's next to the wall
ratios: on this shared machine the floor's wall time moves more from one sitting to the next
than the night's (18-36 s at 10M events), its CPU much less. Peak RSS is the
resident set of the whole process tree (the engine forks a worker per client-month batch,
ingest spawns parse workers), sampled from /proc every 20 ms, or ``ru_maxrss`` if larger;
it counts the pages a forked worker shares with its parent twice. Peak PSS is the same tree's
proportional set (``/proc/PID/smaps_rollup``), shared pages counted once: the memory the
run really holds. Both are also given per Dagster step (with the main process's own RSS),
from samples taken in the worker and the steps' event-log times.
Processes started are counted in the nightly process: ``os.fork`` and ``subprocess.Popen``
through an audit hook, multiprocessing's spawns through ``multiprocessing.util``.

**Month-to-date** (``--month``, on by default): ``--month-days`` days (from 2026-03-01) of
``--month-events`` events a day are generated; night 1 lands day 1 and runs it, days 2 to
N-1 are landed and run as one catch-up, then night N lands day N and runs it, and night N
runs once more with the charges cache removed (what every night cost before the cache).
Days differ in volume (weekends are light: day 1, a Sunday, has under a third of a
weekday's events), so night N is also compared with **day N alone**: a fresh warehouse and
Dagster home where only day N is landed and run, the same new work without the month
behind it. Night N about equal to day N alone means the work is proportional to the days
that changed; the table gives CPU seconds per stage of each.

Prints markdown tables (paste them into docs/performance.md) and, with ``--json FILE``,
every figure of every run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import prepare_floor, run_sampled, work_floor  # noqa: E402

import billing_pipeline.cli  # noqa: E402

# The dagster.yaml ``billing run`` writes for a new home (older versions: telemetry only).
INSTANCE_YAML = getattr(billing_pipeline.cli, "INSTANCE_YAML", "telemetry:\n  enabled: false\n")

NIGHT = date(2026, 3, 10)
MONTH_START = date(2026, 3, 1)
BILLING = Path(sys.executable).with_name("billing")


# --------------------------------------------------------------------------- data


def ensure_data(out: Path, events: int, clients: int, days: int, start: date) -> Path:
    """Generate with ``billing generate`` once; later runs reuse the tree."""
    name = f"nightly-{events}e-{clients}c" + (f"-{days}d" if days > 1 else "")
    target = out / name
    marker = target / ".complete"
    if marker.exists():
        prepare_floor(target)
        return target
    command = [
        str(BILLING),
        "generate",
        "--out",
        str(target),
        "--clients",
        str(clients),
        "--start",
        start.isoformat(),
        "--days",
        str(days),
        "--events-per-day",
        str(events),
        "--seed",
        "1",
        "--no-ledger",
        "--quiet",
        "--force",
    ]
    print(f"generating: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    marker.write_text(" ".join(["billing", *command[1:]]) + "\n")
    prepare_floor(target)
    return target


# --------------------------------------------------------------------------- in the worker


class ProcessCounter:
    """Counts processes started by this process and its forks, in an append-only file."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.path = path
        sys.addaudithook(self._hook)
        import multiprocessing.util as mp_util

        original = mp_util.spawnv_passfds

        def spawnv_passfds(*args, **kwargs):
            os.write(self.fd, b"spawn\n")
            return original(*args, **kwargs)

        mp_util.spawnv_passfds = spawnv_passfds

    def _hook(self, event: str, _args: tuple) -> None:
        if event in ("os.fork", "os.forkpty", "subprocess.Popen", "os.posix_spawn"):
            os.write(self.fd, event.encode() + b"\n")

    def counts(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for kind in self.path.read_text().split():
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def point_env(data: Path, landing: Path, work: Path) -> None:
    os.environ.update(
        {
            "BILLING_LANDING_DIR": str(landing),
            "BILLING_DATA_DIR": str(work / "warehouse"),
            "BILLING_RATECARDS_DIR": str(data / "ratecards"),
            "BILLING_LUA_DIR": str(ROOT / "lua"),
            "BILLING_FINANCE_DIR": str(work / "finance"),
            "DAGSTER_HOME": str(work / "dagster_home"),
        }
    )
    (work / "dagster_home").mkdir(parents=True, exist_ok=True)
    # the instance ``billing run`` creates for a new home
    (work / "dagster_home" / "dagster.yaml").write_text(INSTANCE_YAML)
    (work / "finance").mkdir(parents=True, exist_ok=True)


def _tree_pids(pid: int) -> list[int]:
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as handle:
                pending.extend(int(c) for c in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def _kb(pid: int, path: str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/{path}") as handle:
            for text in handle:
                if text.startswith(field):
                    return int(text.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


class TreeSampler:
    """Memory of this process's tree every 20 ms, with wall-clock times, so that the peak
    can be attributed to the Dagster step running at the time (event-log timestamps).

    Three figures a sample: the RSS summed over the tree (what ``peak RSS`` reports), the
    PSS summed over the tree (pages a forked worker shares with its parent counted once:
    RSS counts them in both), and the RSS of this process alone.

    RSS comes from ``/proc/PID/status``, a few µs a read. PSS needs ``smaps_rollup``, which
    walks the page tables: ~35 ms of kernel CPU for a 3 GB process. Read every 20 ms, it took
    most of a core from the run it measures (until 2026-12-05: see docs/performance.md,
    "Session 12"), so it is read only when its last read cost at most ``PSS_DUTY`` of the
    time since (every ~1.7 s at 3 GB, ~20 ms for a small tree): the PSS peaks are sampled
    ones. A sample without a fresh PSS reading holds None.
    """

    PSS_DUTY = 0.02

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, int | None, int]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pid = os.getpid()
        next_pss = 0.0
        while not self._done.is_set():
            pids = _tree_pids(pid)
            rss = sum(_kb(p, "status", "VmRSS:") for p in pids)
            pss = None
            began = time.perf_counter()
            if began >= next_pss:
                pss = sum(_kb(p, "smaps_rollup", "Pss:") for p in pids)
                ended = time.perf_counter()
                next_pss = ended + (ended - began) / self.PSS_DUTY
            self.samples.append((time.time(), rss, pss, _kb(pid, "status", "VmRSS:")))
            time.sleep(0.02)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._done.set()
        self._thread.join()

    def peaks_mb(self, start: float, end: float) -> tuple[float, float, float]:
        """Peak tree RSS, tree PSS and own RSS (MB) between two times. PSS: the largest
        reading inside, or else the last one before ``end`` (what was known then), capped
        at the RSS peak inside (a tree's PSS is never above its RSS)."""
        return _peaks_mb([s for s in self.samples if start <= s[0] <= end], self.samples, end)


def _peaks_mb(inside: list, every: list, end: float) -> tuple[float, float, float]:
    rss = max((s[1] for s in inside), default=0)
    own = max((s[3] for s in inside), default=0)
    pss = max((s[2] for s in inside if s[2] is not None), default=None)
    if pss is None:
        before = [s[2] for s in every if s[0] <= end and s[2] is not None]
        pss = min(before[-1], rss) if before else 0
    return rss / 1024, pss / 1024, own / 1024


def run_night(instance, start: date, end: date) -> dict:
    """``run_billing`` for the dates; stage seconds from the runs' event logs."""
    from dagster import DagsterEventType

    from billing_pipeline.runner import run_billing

    marks: list[tuple[str, float, float]] = []

    def progress(message: str) -> None:
        marks.append((message, time.perf_counter(), cpu_seconds()))

    began, cpu0 = time.perf_counter(), cpu_seconds()
    with TreeSampler() as sampler:
        report = run_billing(start, end, instance=instance, progress=progress)
    wall, cpu = time.perf_counter() - began, cpu_seconds() - cpu0
    steps: dict[str, float] = {}
    step_peaks: dict[str, float] = {}
    step_windows: list[tuple[float, float]] = []
    metadata: dict[str, float] = {}
    kinds = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
    for _name, run_id, ok, _seconds in report.runs:
        if not ok:
            raise SystemExit(f"run {run_id} failed")
        started: dict[str, float] = {}
        for entry in instance.all_logs(run_id, of_type=kinds):
            if entry.dagster_event.event_type == DagsterEventType.STEP_START:
                started[entry.step_key] = entry.timestamp
            else:
                steps[entry.step_key] = (
                    steps.get(entry.step_key, 0.0) + entry.timestamp - started[entry.step_key]
                )
                window = (started[entry.step_key], entry.timestamp)
                step_windows.append(window)
                step_peaks[entry.step_key] = [
                    max(a, b)
                    for a, b in zip(
                        step_peaks.get(entry.step_key, (0.0, 0.0, 0.0)),
                        sampler.peaks_mb(*window),
                        strict=True,
                    )
                ]
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.asset_materialization
            if materialization.asset_key.to_user_string() == "charges":
                # one materialization per partition of the range, each with the run's totals
                for key in ("events", "charges", "days_computed", "days_from_cache"):
                    metadata[key] = metadata.get(key, 0) + materialization.metadata[key].value
                break
    # CPU of each run: between its "<stage> ..." and "<stage> ...: done" progress lines
    stage_cpu: dict[str, float] = {}
    for (message, _, cpu_a), (_, _, cpu_b) in itertools.pairwise(marks):
        if message.endswith("..."):
            stage = message.split()[0]
            stage_cpu[stage] = stage_cpu.get(stage, 0.0) + cpu_b - cpu_a
    charges_cpu = stage_cpu.get("charges", 0.0)
    outside = [s for s in sampler.samples if not any(a <= s[0] <= b for a, b in step_windows)]
    step_peaks["outside steps"] = list(_peaks_mb(outside, sampler.samples, time.time()))
    return {
        "wall": wall,
        "cpu": cpu,
        "steps": steps,
        "step_peak_rss_mb": step_peaks,
        "charges_cpu": charges_cpu,
        "stage_cpu": stage_cpu,
        "runs": len(report.runs),
        "problems": report.has_problems,
        **metadata,
    }


def work_nightly(data: Path, work: Path) -> dict:
    from dagster import DagsterInstance

    counter = ProcessCounter(work / "processes.log")
    point_env(data, data / "landing", work)
    instance = DagsterInstance.get()
    night = run_night(instance, NIGHT, NIGHT)
    night["processes_by_kind"] = counter.counts()
    night["processes"] = sum(night["processes_by_kind"].values())
    night["dagster_runs"] = instance.get_runs_count()
    return night


def land(source: Path, landing: Path, day: date) -> None:
    """Copy the landing files delivered on ``day`` (``WAREHOUSE/YYYY-MM-DD/``)."""
    for folder in sorted(source.glob(f"*/{day.isoformat()}")):
        shutil.copytree(folder, landing / folder.parent.name / folder.name, dirs_exist_ok=True)


def work_month(data: Path, work: Path, days: int) -> dict:
    from dagster import DagsterInstance

    landing = work / "landing"
    landing.mkdir(parents=True)
    point_env(data, landing, work)
    instance = DagsterInstance.get()
    first, last = MONTH_START, MONTH_START + timedelta(days=days - 1)
    land(data / "landing", landing, first)
    night_1 = run_night(instance, first, first)
    if days > 2:
        for n in range(1, days - 1):
            land(data / "landing", landing, first + timedelta(days=n))
        run_night(instance, first + timedelta(days=1), last - timedelta(days=1))
    land(data / "landing", landing, last)
    night_n = run_night(instance, last, last)
    shutil.rmtree(work / "warehouse" / "_cache")
    uncached = run_night(instance, last, last)
    return {"night_1": night_1, "night_n": night_n, "night_n_uncached": uncached}


def work_alone(data: Path, work: Path, days: int) -> dict:
    """Day ``days`` of the month landed and run in a fresh warehouse and Dagster home."""
    from dagster import DagsterInstance

    landing = work / "landing"
    landing.mkdir(parents=True)
    point_env(data, landing, work)
    last = MONTH_START + timedelta(days=days - 1)
    land(data / "landing", landing, last)
    return run_night(DagsterInstance.get(), last, last)


def worker(kind: str, data: Path, work: Path, days: int) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    if kind == "floor":
        cpu = cpu_seconds()
        result = work_floor(data)
        # the floor's CPU (polars reads on every core) against the night's: steadier from
        # one sitting to the next than wall time on this shared machine
        result["cpu"] = cpu_seconds() - cpu
    elif kind == "nightly":
        result = work_nightly(data, work)
    elif kind == "alone":
        result = work_alone(data, work, days)
    else:
        result = work_month(data, work, days)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["ru_maxrss_kb"] = max(own, kids)
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------- parent


def measure(kind: str, data: Path, out: Path, days: int = 1, keep: Path | None = None) -> dict:
    """One measurement in a fresh interpreter, in a fresh work directory; adds peak RSS.
    With ``keep``, the work directory (outputs, Dagster home) is moved there afterwards."""
    work = out / f"work-{kind}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    command = [sys.executable, __file__, "--worker", kind, "--data", str(data)]
    command += ["--work", str(work), "--month-days", str(days)]
    try:
        stdout, peak = run_sampled(command, kind)
        if keep is not None:
            shutil.rmtree(keep, ignore_errors=True)
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(work, keep)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    line = next(ln for ln in reversed(stdout.splitlines()) if ln.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["rss_mb"] = max(peak, result["ru_maxrss_kb"]) / 1024
    return result


def nightly_row(events: int, clients: int, floors: list[dict], nights: list[dict]) -> dict:
    """Medians of the figures of repeated runs (each figure on its own)."""

    def med(values) -> float:
        return statistics.median(values)

    def step(night: dict, *names: str) -> float:
        return sum(night["steps"].get(n, 0.0) for n in names)

    floor = med(f["seconds"] for f in floors)
    floor_cpu = med(f["cpu"] for f in floors)
    ingest = med(step(n, "landing_files", "activity") for n in nights)
    charges = med(step(n, "charges") for n in nights)
    events_charged = med(n["events"] for n in nights)
    wall = med(n["wall"] for n in nights)
    cpu = med(n["cpu"] for n in nights)
    rss = med(n["rss_mb"] for n in nights)
    return {
        "events": events,
        "clients": clients,
        "events_charged": int(events_charged),
        "floor_s": floor,
        "ingest_s": ingest,
        "ingest_ratio": ingest / floor,
        "charges_s": charges,
        "charges_events_per_s": events_charged / charges if charges else 0.0,
        "charges_events_per_cpu_s": med(n["events"] / n["charges_cpu"] for n in nights),
        "invoices_s": med(step(n, "invoices") for n in nights),
        "reconciliation_s": med(step(n, "reconciliation") for n in nights),
        "wall_s": wall,
        "wall_ratio": wall / floor,
        "floor_cpu_s": floor_cpu,
        "cpu_s": cpu,
        "cpu_ratio": cpu / floor_cpu,
        "ingest_cpu_ratio": med(n["stage_cpu"]["ingest"] for n in nights) / floor_cpu,
        "rss_mb": rss,
        "pss_mb": med(max(v[1] for v in n["step_peak_rss_mb"].values()) for n in nights),
        "rss_bytes_per_event": rss * 1024 * 1024 / events,
        "us_per_event": wall / events * 1e6,
        "dagster_runs": int(med(n["dagster_runs"] for n in nights)),
        "processes": int(med(n["processes"] for n in nights)),
        "outside_s": med(n["wall"] - sum(n["steps"].values()) for n in nights),
        "floor_rss_mb": med(f["rss_mb"] for f in floors),
        "repeat": len(nights),
    }


NIGHTLY_COLUMNS = [
    ("events", "events", "{:,}"),
    ("clients", "clients", "{}"),
    ("floor s", "floor_s", "{:.2f}"),
    ("ingest s", "ingest_s", "{:.2f}"),
    ("ingest/floor", "ingest_ratio", "{:.1f}x"),
    ("charges s", "charges_s", "{:.2f}"),
    ("charges ev/s", "charges_events_per_s", "{:,.0f}"),
    ("charges ev/CPU-s", "charges_events_per_cpu_s", "{:,.0f}"),
    ("invoices s", "invoices_s", "{:.2f}"),
    ("recon s", "reconciliation_s", "{:.2f}"),
    ("wall s", "wall_s", "{:.2f}"),
    ("wall/floor", "wall_ratio", "{:.1f}x"),
    ("floor CPU s", "floor_cpu_s", "{:.2f}"),
    ("CPU s", "cpu_s", "{:.2f}"),
    ("CPU/floor CPU", "cpu_ratio", "{:.1f}x"),
    ("ingest CPU/floor CPU", "ingest_cpu_ratio", "{:.1f}x"),
    ("peak RSS MB", "rss_mb", "{:,.0f}"),
    ("peak PSS MB", "pss_mb", "{:,.0f}"),
    ("RSS B/event", "rss_bytes_per_event", "{:,.0f}"),
    ("µs/event", "us_per_event", "{:.1f}"),
    ("runs", "dagster_runs", "{}"),
    ("processes", "processes", "{}"),
    ("outside compute s", "outside_s", "{:.2f}"),
]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def month_rows(month: dict) -> list[list[str]]:
    rows = []
    for label, key in (
        ("1", "night_1"),
        (f"{month['days']}", "night_n"),
        (f"{month['days']} without cache", "night_n_uncached"),
        (f"day {month['days']} alone", "night_n_alone"),
    ):
        night = month[key]
        cpu = night["stage_cpu"]
        rows.append(
            [
                label,
                f"{int(night['events']):,}",
                f"{int(night['days_computed'])}",
                f"{int(night['days_from_cache'])}",
                f"{night['steps'].get('charges', 0.0):.2f}",
                *(f"{cpu.get(stage, 0.0):.2f}" for stage in MONTH_STAGES),
                f"{night['cpu']:.2f}",
                f"{night['wall']:.2f}",
            ]
        )
    return rows


MONTH_STAGES = ("ingest", "charges", "invoices", "reconciliation")


MONTH_HEADER = [
    "night",
    "events in month",
    "days computed",
    "days cached",
    "charges s",
    "ingest CPU s",
    "charges CPU s",
    "invoices CPU s",
    "reconciliation CPU s",
    "CPU s",
    "wall s",
]


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--clients", type=int, nargs="+", default=[300])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--month", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--nightly", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--month-events", type=int, default=100_000, help="events a day")
    parser.add_argument("--month-clients", type=int, default=30)
    parser.add_argument("--month-days", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="3,000 events, 3 clients, once")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the last nightly run's work directory (outputs, Dagster home) under "
        "KEEP/nightly-<E>e-<C>c, and the month's (after its uncached night N) under "
        "KEEP/nightly-<E>e-<C>c-<D>d, to compare outputs between versions of the code",
    )
    parser.add_argument(
        "--worker", choices=["floor", "nightly", "month", "alone"], help=argparse.SUPPRESS
    )
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.work, args.month_days)
        return
    if args.smoke:
        args.events, args.clients, args.repeat = [3000], [3], 1
        args.month_events, args.month_clients, args.month_days = 600, 3, 2

    args.out.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, repeat {args.repeat}")
    print(f"load average at start: {load_average()}", flush=True)
    results: dict = {"command": " ".join(sys.argv), "nightly": [], "month": None}
    for events in args.events if args.nightly else []:
        for clients in args.clients:
            data = ensure_data(args.out, events, clients, 1, NIGHT)
            floors, nights = [], []
            for i in range(args.repeat):
                # alternate floor and nightly so both see the same machine load
                floors.append(measure("floor", data, args.out))
                keep = args.keep / data.name if args.keep else None
                nights.append(measure("nightly", data, args.out, keep=keep))
                print(
                    f"  {events:,} events {clients} clients run {i + 1}: floor"
                    f" {floors[-1]['seconds']:.2f}s, nightly {nights[-1]['wall']:.2f}s,"
                    f" peak RSS {nights[-1]['rss_mb']:.0f} MB, load {load_average()}",
                    flush=True,
                )
                print(
                    "    CPU s by run: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in nights[-1]["stage_cpu"].items()),
                    flush=True,
                )
                peaks = nights[-1]["step_peak_rss_mb"]
                print(
                    "    peak MB by step (tree RSS / tree PSS / main process RSS): "
                    + ", ".join(
                        f"{k} {r:,.0f}/{p:,.0f}/{o:,.0f}" for k, (r, p, o) in peaks.items()
                    ),
                    flush=True,
                )
            results["nightly"].append(
                {"row": nightly_row(events, clients, floors, nights), "runs": nights}
            )
    if args.month:
        data = ensure_data(
            args.out, args.month_events, args.month_clients, args.month_days, MONTH_START
        )
        keep = args.keep / data.name if args.keep else None
        month = measure("month", data, args.out, days=args.month_days, keep=keep)
        month["night_n_alone"] = measure("alone", data, args.out, days=args.month_days)
        month["days"] = args.month_days
        month["events_per_day"] = args.month_events
        month["clients"] = args.month_clients
        results["month"] = month

    print(f"\nload average at end: {load_average()}")
    print(f"nightly run, medians of {args.repeat} (stage seconds from the Dagster event log)\n")
    rows = [r["row"] for r in results["nightly"]]
    header = [name for name, _, _ in NIGHTLY_COLUMNS]
    if rows:
        cells = [[fmt.format(r[key]) for _, key, fmt in NIGHTLY_COLUMNS] for r in rows]
        print(markdown(header, cells))
    if results["month"]:
        month = results["month"]
        print(
            f"\nmonth to date: {month['days']} days of {month['events_per_day']:,} events,"
            f" {month['clients']} clients; the first and last night, and the last day alone\n"
        )
        print(markdown(MONTH_HEADER, month_rows(month)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True, default=str))


if __name__ == "__main__":
    main()

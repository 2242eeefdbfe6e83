#!/usr/bin/env python3
"""Soak the "AI Background" filter in a real OBS (Xvfb): hours of settings churn, or nothing touched at all.

One OBS with a looping camera-like clip and one filter. A churn schedule changes what users change in an evening
of tweaking (background, downsample ratio, source resolution, disable/enable, remove/re-add), all over
obs-websocket; a steady phase touches nothing. OBS's RSS is sampled every --sample seconds. At the end: RSS low
points and peaks per phase, skipped/total render frames, errors and tracebacks in the log, crashes, OBS's exit code,
and the RSS curve as a CSV and a PNG (--out). Exit status 0 only if OBS survived and exited 0 without a traceback.

    .venv/bin/python scripts/soak_obs.py --churn-minutes 10 [--steady-minutes 0] [--actions background,ratio]
    .venv/bin/python scripts/soak_obs.py --churn-minutes 0 --steady-minutes 30

--gdb runs OBS under gdb and prints every thread's backtrace if it crashes; --malloc-check sets glibc's
MALLOC_CHECK_=3 and MALLOC_PERTURB_ so a corrupted heap aborts where it is noticed.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from obs_harness import Obs, ObsConfig, ai_filter, media_input  # noqa: E402
from obsws_python.error import OBSSDKRequestError  # noqa: E402

from obs_rvm.obs.settings import rgb_to_obs_color  # noqa: E402

from paths import ASTRONAUT, CLIPS, MODEL  # noqa: E402

ACTIONS = {"background": 2.0, "ratio": 20.0, "resize": 30.0, "toggle": 45.0, "readd": 60.0}
"""Every churn action and how often it happens (seconds)."""
STORM = {"readd": 0.7, "background": 0.15, "recreate": 0.1, "resize": 0.05}
"""The removal storm's actions and their odds: mostly the filter removed and re-added back to back (the pattern
that crashed OBS 29 within seconds), the source deleted and created again, backgrounds and sizes changed."""
STATS = re.compile(r"stats AI Background 'AI' on 'Camera': (.*)")
RATIOS = (0.25, 0.4, 0.5, 0.0)
COLORS = ((0, 0, 255), (255, 220, 0), (0, 177, 64), (200, 30, 200))


@dataclass
class Sample:
    t: float
    phase: str
    rss_mib: float
    skipped: int
    total: int
    render_p99_ms: float
    render_max_ms: float
    wait_max_ms: float
    """From the filter's newest stats line (its last 600 frames); nan while it has none."""


@dataclass
class Soak:
    obs: Obs
    clips: list[Path]
    """The camera clip at each size."""
    picture: Path
    video: Path
    samples: list[Sample] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    size_index: int = 0
    sync: str = "auto"
    present: bool = True
    enabled: bool = True
    step: int = 0

    @property
    def clip(self) -> Path:
        return self.clips[self.size_index]

    # -- the actions ------------------------------------------------------------------------------------------------

    def background(self) -> None:
        self.step += 1
        kind = self.step % 6
        if kind == 0:
            values = {"background": "blur", "blur": 20 + 15 * (self.step % 5)}
        elif kind == 1:
            values = {"background": "color", "color": rgb_to_obs_color(COLORS[self.step % len(COLORS)])}
        elif kind == 2:
            values = {"background": "image", "image_path": str(self.picture)}
        elif kind == 3:
            values = {"background": "video", "video_path": str(self.video)}
        elif kind == 4:
            values = {"background": "transparent"}
        else:
            values = {"background": "color", "color": rgb_to_obs_color(COLORS[(self.step + 1) % len(COLORS)])}
        self._filter_settings(values)

    def ratio(self) -> None:
        self._filter_settings({"downsample_ratio": RATIOS[self.counters.get("ratio", 0) % len(RATIOS)]})

    def resize(self) -> None:
        self.size_index = (self.size_index + 1) % len(self.clips)
        self.obs.client.set_input_settings("Camera", {"local_file": str(self.clip)}, True)

    def toggle(self) -> None:
        if self.present:
            self.enabled = not self.enabled
            self.obs.client.set_source_filter_enabled("Camera", "AI", self.enabled)

    def readd(self, settings: dict | None = None, pause: float = 0.5) -> None:
        """Remove the filter (if present), wait `pause` seconds and add a new one with these settings (blur)."""
        if self.present:
            self.obs.client.remove_source_filter("Camera", "AI")
            self.present = False
            time.sleep(pause)
        self.add_filter(settings or {"background": "blur"})

    def add_filter(self, settings: dict) -> None:
        self.obs.client.create_source_filter("Camera", "AI", "obs_rvm_ai_background", settings)
        self.present, self.enabled = True, True

    # -- the removal storm ------------------------------------------------------------------------------------------

    def storm_settings(self, rng: random.Random) -> dict:
        """A random background, in the storm's video mode."""
        kind = rng.choice(("blur", "color", "image", "video", "transparent"))
        values = {"background": kind, "sync": self.sync}
        if kind == "color":
            values["color"] = rgb_to_obs_color(rng.choice(COLORS))
        elif kind == "image":
            values["image_path"] = str(self.picture)
        elif kind == "video":
            values["video_path"] = str(self.video)
        return values

    def storm_step(self, rng: random.Random, gap: float) -> str:
        """One storm action with random gaps of up to `gap` seconds; returns its name."""
        c = self.obs.client
        action = rng.choices(list(STORM), list(STORM.values()))[0]
        if action == "readd":
            self.readd(self.storm_settings(rng), rng.uniform(0, gap))
        elif action == "background" and self.present:
            c.set_source_filter_settings("Camera", "AI", self.storm_settings(rng), True)
        elif action == "recreate":
            c.remove_input("Camera")
            time.sleep(rng.uniform(0, gap))
            self.create_camera(media_input("Camera", self.clip))
            self.add_filter(self.storm_settings(rng))
        elif action == "resize":
            self.resize()
        time.sleep(rng.uniform(0, 4 * gap))
        return action

    def create_camera(self, camera, timeout: float = 20.0) -> None:
        """Create the camera input again once OBS has freed its name: when the removed source's last reference is
        gone (at once on OBS 29, later on 32.2, whose UI lets go of it on its own schedule). A source never freed,
        a reference leaked, fails here."""
        start = time.monotonic()
        while True:
            try:
                self.obs.client.create_input("Scene", "Camera", camera.kind, camera.settings, True)
                break
            except OBSSDKRequestError as e:
                if e.code != 601 or time.monotonic() - start > timeout:
                    raise
                time.sleep(0.05)
        waited = int(1000 * (time.monotonic() - start))
        self.counters["name freed after ms (max)"] = max(self.counters.get("name freed after ms (max)", 0), waited)

    def run_storm(self, seconds: float, gap: float, seed: int, t0: float, every: float) -> None:
        rng = random.Random(seed)
        next_sample = time.monotonic()
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.obs.crashed:
            if time.monotonic() >= next_sample:
                self.sample(t0, "storm")
                next_sample += every
            try:
                action = self.storm_step(rng, gap)
            except Exception:
                deadline = time.monotonic() + 10  # a request OBS died under: give the process time to end
                while time.monotonic() < deadline and not self.obs.crashed:
                    time.sleep(0.2)
                if self.obs.crashed:
                    return
                raise
            self.counters[action] = self.counters.get(action, 0) + 1
        if not self.obs.crashed:
            self.sample(t0, "storm")
            self.settle()

    def settle(self) -> None:
        """After the storm, the filter still keys: a fresh one on the camera reports keying (counted as "keyed")."""
        mark = len(self.obs.log_text())
        self.readd({"background": "blur", "sync": self.sync}, pause=0.0)
        self.obs.wait_log(r"'AI' on 'Camera': keying", 120, after=mark)
        self.counters["keyed"] = 1

    def restore(self) -> None:
        """Back to how the soak started (640x480, blur, auto ratio, enabled), so steady figures compare."""
        c = self.obs.client
        if not self.present:
            self.readd()
        if not self.enabled:
            self.enabled = True
            c.set_source_filter_enabled("Camera", "AI", True)
        self._filter_settings({"background": "blur", "blur": 50, "downsample_ratio": 0.0})
        if self.size_index:
            self.size_index = 0
            c.set_input_settings("Camera", {"local_file": str(self.clip)}, True)
        time.sleep(5)  # let the rebuild finish before measuring

    def _filter_settings(self, values: dict) -> None:
        if self.present:
            self.obs.client.set_source_filter_settings("Camera", "AI", values, True)

    # -- measuring --------------------------------------------------------------------------------------------------

    def sample(self, t0: float, phase: str) -> Sample:
        stats = self.obs.client.get_stats()
        lines = STATS.findall(self.obs.log_text())
        numbers = dict(kv.split("=", 1) for kv in lines[-1].split()) if lines else {}
        render = [float(numbers.get(k, "nan")) for k in ("render_p99_ms", "render_max_ms", "wait_max_ms")]
        s = Sample(time.monotonic() - t0, phase, rss_mib(self.obs.pid), stats.render_skipped_frames,
                   stats.render_total_frames, *render)
        self.samples.append(s)
        print(f"  {s.t:7.0f} s  {phase:6}  RSS {s.rss_mib:7.1f} MiB  skipped {s.skipped}/{s.total}", flush=True)
        return s

    def run_phase(self, phase: str, seconds: float, actions: list[str], every: float, t0: float,
                  speed: float = 1.0) -> None:
        period = {a: ACTIONS[a] / speed for a in actions}
        due = {a: time.monotonic() + period[a] for a in actions}
        next_sample = time.monotonic()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                self.sample(t0, phase)
                next_sample += every
            for action in actions:
                if now >= due[action]:
                    getattr(self, action)()
                    self.counters[action] = self.counters.get(action, 0) + 1
                    due[action] += period[action]
            wait = min([next_sample, end, *due.values()]) - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if self.obs.crashed:
                return
        self.sample(t0, phase)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def make_clip(size: tuple[int, int], folder: Path) -> Path:
    out = folder / f"clip-{size[0]}x{size[1]}.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(CLIPS / "help.mkv"), "-vf",
                    f"scale={size[0]}:{size[1]}", "-c:v", "libx264", "-preset", "ultrafast", str(out)], check=True)
    return out


def phase_figures(samples: list[Sample], phase: str, skip_s: float) -> dict[str, float] | None:
    """Low points of the RSS per whole minute after `skip_s` (warm-up), peaks, and render figures, for one phase."""
    own = [s for s in samples if s.phase == phase]
    if len(own) < 2:
        return None
    start = own[0].t + skip_s
    late = [s for s in own if s.t >= start] or own
    minutes: dict[int, list[float]] = {}
    for s in late:
        minutes.setdefault(int((s.t - start) // 60), []).append(s.rss_mib)
    # Whole minutes only: a last sample or two on their own say nothing about the minute's low point.
    whole = {m: v for m, v in minutes.items() if start + 60 * (m + 1) <= own[-1].t + 1} or minutes
    lows = [min(v) for _, v in sorted(whole.items())]
    return {"first_low": lows[0], "last_low": lows[-1], "low_growth": lows[-1] - lows[0],
            "peak": max(s.rss_mib for s in own), "median": statistics.median(s.rss_mib for s in own),
            "first": own[0].rss_mib, "last": own[-1].rss_mib,
            "skipped": own[-1].skipped - own[0].skipped, "total": own[-1].total - own[0].total,
            "render_p99_ms": _nanmedian([s.render_p99_ms for s in own]),
            "render_max_ms": max((s.render_max_ms for s in own if not math.isnan(s.render_max_ms)), default=math.nan),
            "wait_max_ms": max((s.wait_max_ms for s in own if not math.isnan(s.wait_max_ms)), default=math.nan)}


def _nanmedian(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def plot(samples: list[Sample], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"(no plot: pip install matplotlib for {path})")
        return
    fig, ax = plt.subplots(figsize=(9, 4))
    for phase, colour in (("churn", "tab:red"), ("steady", "tab:blue")):
        own = [s for s in samples if s.phase == phase]
        if own:
            ax.plot([s.t / 60 for s in own], [s.rss_mib for s in own], colour, label=phase)
    ax.set_xlabel("minutes")
    ax.set_ylabel("OBS RSS (MiB)")
    ax.set_title("OBS with one AI Background filter")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"RSS plot: {path}")


def log_problems(log: str) -> dict[str, int]:
    ours = [line for line in log.splitlines() if "[obs-rvm]" in line]
    return {"tracebacks": log.count("Traceback"), "exceptions ignored": log.count("Exception ignored"),
            "filter errors": sum(1 for line in ours if re.search(r"failed|unexpected|error", line, re.I))}


@dataclass
class Report:
    samples: list[Sample]
    counters: dict[str, int]
    crashed: bool
    returncode: int | None
    problems: dict[str, int]
    backtrace: str

    @property
    def ok(self) -> bool:
        return not self.crashed and self.returncode == 0 and not self.problems["tracebacks"]

    def figures(self, phase: str, warmup: float = 0.0) -> dict[str, float] | None:
        return phase_figures(self.samples, phase, warmup)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--churn-minutes", type=float, default=10.0)
    p.add_argument("--steady-minutes", type=float, default=0.0)
    p.add_argument("--actions", default=",".join(ACTIONS), help=f"churn actions, comma-separated, from "
                   f"{', '.join(ACTIONS)}")
    p.add_argument("--speed", type=float, default=1.0, help="run the churn schedule this many times faster "
                   "(rebuilds pile up on each other: the pattern that once crashed OBS)")
    p.add_argument("--storm-minutes", type=float, default=0.0, help="a removal storm first: the filter removed "
                   "and re-added back to back, the source deleted and re-created, random backgrounds and sizes")
    p.add_argument("--gap", type=float, default=0.05, help="storm: longest random pause between removal and re-adding "
                   "(seconds; up to 4x that between actions)")
    p.add_argument("--sync", choices=("auto", "sync", "live"), default="auto", help="storm: the filters' video mode")
    p.add_argument("--seed", type=int, default=None, help="storm: random seed (printed; default: a new one)")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--warmup", type=float, default=120.0, help="seconds of the churn left out of low-point growth "
                   "(the first model preparations, caches filling)")
    p.add_argument("--out", type=Path, default=None, help="folder for soak.csv, soak.png and the OBS log")
    p.add_argument("--gdb", action="store_true", help="run OBS under gdb: backtraces of a crash")
    p.add_argument("--malloc-check", action="store_true", help="glibc heap checks (MALLOC_CHECK_=3)")
    p.add_argument("--valgrind", action="store_true", help="run OBS under valgrind memcheck (very slow; use a "
                   "small --canvas): every invalid read or write with its stack, in valgrind.txt")
    p.add_argument("--canvas", default="640x480", help="canvas and the camera's first size, WxH; "
                   "resizing switches to 2W x 1.5H (default 640x480: 1280x720)")
    return p


def run(args: argparse.Namespace, out: Path) -> Report:
    """One OBS, the phases asked for; everything it measured."""
    actions = [a for a in args.actions.split(",") if a]
    unknown = set(actions) - set(ACTIONS)
    if unknown:
        raise SystemExit(f"unknown action(s) {', '.join(sorted(unknown))}: choose from {', '.join(ACTIONS)}")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        width, height = (int(v) for v in args.canvas.split("x"))
        sizes = ((width, height), (2 * width, 3 * height // 2))
        clips = [make_clip(size, work) for size in sizes]
        env = {"OBS_RVM_STATS_INTERVAL": "2", "PYTHONFAULTHANDLER": "1"}
        if args.valgrind:  # Python's own allocator hides blocks from memcheck
            env["PYTHONMALLOC"] = "malloc"
        if args.malloc_check:  # glibc 2.34+ checks only with its debug library preloaded
            debug = next(Path("/usr/lib").glob("*/libc_malloc_debug.so.0"), None)
            env |= {"MALLOC_CHECK_": "3", "MALLOC_PERTURB_": "165", **({"LD_PRELOAD": str(debug)} if debug else {})}
        # OBS's own environment only: this process's stays as it was (the test suite imports this module)
        env["OBS_RVM_CACHE_DIR"] = os.environ.get("OBS_RVM_CACHE_DIR",
                                                  str(Path(tempfile.gettempdir()) / "obs-rvm-test-cache"))
        if os.environ.get("OBS_RVM_MODEL") or MODEL.is_file():  # the shared test model, as the benchmarks use it
            env["OBS_RVM_MODEL"] = os.environ.get("OBS_RVM_MODEL") or str(MODEL)
        config = ObsConfig(script=REPO / "obs_rvm" / "obs_script.py",
                           site_packages=[Path(p) for p in __import__("site").getsitepackages()],
                           inputs=[media_input("Camera", clips[0], [ai_filter("AI", background="blur")])],
                           canvas=sizes[0], env=env, gdb=args.gdb,
                           valgrind=out / "valgrind.txt" if args.valgrind else None,
                           start_timeout=900.0 if args.valgrind else 90.0)
        obs = Obs(config, work / "obs")
        t0 = time.monotonic()
        with obs:
            obs.wait_log(r"'AI' on 'Camera': (keying|.*(error|failed|could not|not found))",
                         1800 if args.valgrind else 180)
            soak = Soak(obs, clips, ASTRONAUT, CLIPS / "thanks.mkv")
            seed = args.seed if args.seed is not None else random.randrange(1 << 30)
            soak.sync = args.sync
            print(f"OBS pid {obs.pid}; storm {args.storm_minutes:g} min (gap {args.gap:g} s, {args.sync}, "
                  f"seed {seed}), "
                  f"churn {args.churn_minutes:g} min ({', '.join(actions) or 'nothing'}, speed {args.speed:g}), "
                  f"steady {args.steady_minutes:g} min", flush=True)
            if args.storm_minutes > 0:
                soak.run_storm(60 * args.storm_minutes, args.gap, seed, t0, args.sample)
                if not obs.crashed and (args.churn_minutes > 0 or args.steady_minutes > 0):
                    soak.restore()
            if args.churn_minutes > 0 and not obs.crashed:
                soak.run_phase("churn", 60 * args.churn_minutes, actions, args.sample, t0, args.speed)
            if args.steady_minutes > 0 and not obs.crashed:
                if args.churn_minutes > 0:
                    soak.restore()
                soak.run_phase("steady", 60 * args.steady_minutes, [], args.sample, t0)
            crashed = obs.crashed
        log = obs.log_text()
        stdout = (obs.workdir / "obs-stdout.txt").read_text(errors="replace")
    (out / "obs-log.txt").write_text(log)
    (out / "obs-stdout.txt").write_text(stdout)
    with open(out / "soak.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seconds", "phase", "rss_mib", "render_skipped", "render_total", "render_p99_ms",
                         "render_max_ms", "wait_max_ms"])
        for s in soak.samples:
            writer.writerow([f"{s.t:.1f}", s.phase, f"{s.rss_mib:.1f}", s.skipped, s.total, s.render_p99_ms,
                             s.render_max_ms, s.wait_max_ms])
    crashed = crashed or obs.returncode is None or obs.returncode < 0
    backtrace = _backtrace(stdout) if crashed or obs.returncode != 0 else ""
    return Report(soak.samples, soak.counters, crashed, obs.returncode, log_problems(log), backtrace)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        report = run(args, out)
        print(f"\nsamples: {out / 'soak.csv'}")
        plot(report.samples, out / "soak.png")
    print(f"actions done: {report.counters}")
    steady = report.figures("steady")
    for phase, skip in (("storm", 0.0), ("churn", args.warmup), ("steady", 0.0)):
        f = report.figures(phase, skip)
        if not f:
            continue
        ratio = f", peak/steady median {f['peak'] / steady['median']:.2f}" if steady and phase == "churn" else ""
        print(f"{phase}: RSS {f['first']:.0f} -> {f['last']:.0f} MiB; per-minute low points {f['first_low']:.0f} -> "
              f"{f['last_low']:.0f} MiB ({f['low_growth']:+.0f} MiB after {skip:.0f} s); peak {f['peak']:.0f} MiB"
              f"{ratio}; skipped render frames {f['skipped']}/{f['total']}; filter video_render p99 "
              f"{f['render_p99_ms']:.1f} ms (median of 20 s windows), longest {f['render_max_ms']:.1f} ms; longest "
              f"wait from frame start to the filter {f['wait_max_ms']:.1f} ms")
    print(f"crashes: {int(report.crashed)}; OBS exit code {report.returncode}; "
          + "; ".join(f"{k}: {v}" for k, v in report.problems.items()))
    if report.backtrace:
        print("backtrace:\n" + report.backtrace)
    print("soak: PASS" if report.ok else "soak: FAIL")
    return 0 if report.ok else 1


def _backtrace(stdout: str) -> str:
    """What gdb or Python's faulthandler printed about a crash."""
    at = min((i for i in (stdout.find("Thread "), stdout.find("Fatal Python error"), stdout.find("received signal"))
              if i >= 0), default=-1)
    return stdout[at:at + 20000] if at >= 0 else ""


if __name__ == "__main__":
    sys.exit(main())

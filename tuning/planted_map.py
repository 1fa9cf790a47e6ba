"""The map of issue 26: where does BaNEL beat policy gradient? A grid of planted-feature cells
(``task: synthetic``; q, s, e) x methods x seeds, each an ordinary run folder, then a report.

Every run is ``python -m banel_ray.run`` on ``banel_ray/configs/synthetic_map.yaml`` (in process,
torch sampler, one thread), ``--parallel`` at once (one per core), in ``OUT/runs/<cell>/<arm>_s<seed>``.
A run with a summary.json is skipped on a rerun; one with only a config.json is resumed. Each
cell's prior is trained (once per law) and planted before any run starts, its achieved rates in
``OUT/priors.json``. ``planted_report`` then writes the table and heatmaps from the run folders
(also alone: ``--report-only``). Every final rate is exact (the task's enumeration).

The full map (issue 26): 5 q x 3 s x 2 e = 30 cells x 5 methods x 4 seeds = 600 runs of 10 rounds
of m = 250 (at most 2,500 NREs; a string paid for once is not paid again). Measured here, one run
on one core (CPU seconds, prior cached): banel 27, npo 16, count 13, random 11, reinforce about 10,
so about 77 per cell and seed: 30 x 4 x 77 s = 2.6 core-hours, plus about 3 minutes of priors (one
training, 30 plantings); about 1.3 hours on 2 free cores:

    python -m tuning.planted_map --out results/when-banel-wins --q 1e-2,3e-3,1e-3,3e-4,1e-4 \
        --s 0.1,0.5,1 --e 0,qs --methods banel,reinforce,count,npo,random --seeds 0-3 --parallel 2

``--e qs`` is e = q*s (a floor as large as the feature's share). Rebuild the report alone with
``python -m tuning.planted_map --out results/when-banel-wins --report-only``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from banel_ray import config as C
from banel_ray.cli import Parser, fail
from banel_ray.core.run_folder import RunFolder

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "banel_ray" / "configs" / "synthetic_map.yaml"
# arm -> --set overrides on CONFIG; the baselines at the settings of the regime comparison
# (results/drift-regime/arms.py). banel_floor: the constant token floor -6, which by construction
# forbids a feature the prior writes at q < e^-6 (2.5e-3): kept as an arm, not in the default map.
ARMS: dict[str, list[str]] = {
    "banel": [],
    "banel_floor": ["support.kind=token", "support.threshold=-6.0"],
    "reinforce": ["method=reinforce", "pg.lr=3e-4"],
    "count": ["method=count", "count.coef=0.3", "pg.lr=3e-4"],
    "npo": ["method=npo"],
    "random": ["method=random"],
}
DEFAULT_ARMS = "banel,reinforce,count,npo,random"


@dataclass(frozen=True)
class Cell:
    q: float
    s: float
    e: float

    @property
    def name(self) -> str:
        return f"q{self.q:g}_s{self.s:g}_e{self.e:.3g}"

    def sets(self) -> list[str]:
        return [f"task_options.{k}={yaml_float(v)}" for k, v in (("q", self.q), ("s", self.s), ("e", self.e))]


def yaml_float(v: float) -> str:
    """repr, with a mantissa dot that YAML 1.1 needs to read 1e-05 as a number (not a string)."""
    text = repr(float(v))
    mant, _, exp = text.partition("e")
    return text if not exp or "." in mant else f"{mant}.0e{exp}"


def numbers(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise C.ConfigError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def grid(q: str, s: str, e: str) -> list[Cell]:
    """Cells of the grid; an ``e`` of ``qs`` is q*s (the floor as large as the feature's share)."""
    es = [x.strip() for x in e.split(",") if x.strip()]
    for x in es:
        if x != "qs":
            numbers(x, "--e (numbers or qs)")
    cells = [
        Cell(qq, ss, qq * ss if x == "qs" else float(x))
        for qq in numbers(q, "--q")
        for ss in numbers(s, "--s")
        for x in es
    ]
    if not cells:
        raise C.ConfigError("--q, --s and --e must each name at least one value")
    return list(dict.fromkeys(cells))


def seeds(text: str) -> list[int]:
    from banel_ray.compare import parse_seeds

    return parse_seeds(text)


def arms(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in names if a not in ARMS]
    if bad or not names:
        raise C.ConfigError(f"--methods: unknown arm {bad[0] if bad else text!r}; allowed: {', '.join(ARMS)}")
    return list(dict.fromkeys(names))


def run_dir(out: Path, cell: Cell, arm: str, seed: int) -> Path:
    return out / "runs" / cell.name / f"{arm}_s{seed}"


def command(out: Path, cell: Cell, arm: str, seed: int, config: Path, sets: list[str]) -> list[str]:
    """A started run is resumed (its folder's config); a new one gets the cell, arm and seed."""
    d = run_dir(out, cell, arm, seed)
    if RunFolder(d).has_config():
        return [sys.executable, "-m", "banel_ray.run", "--resume", str(d)]
    items = [*sets, *cell.sets(), *ARMS[arm], f"seed={seed}", f"run_dir={d}"]
    return [sys.executable, "-m", "banel_ray.run", "--config", str(config)] + [x for i in items for x in ("--set", i)]


def pending(out: Path, cells: list[Cell], arm_names: list[str], seed_list: list[int]) -> list[tuple]:
    """(cell, arm, seed) without a summary.json, seeds outermost: an early stop leaves whole seeds."""
    return [
        (c, a, s)
        for s in seed_list
        for c in cells
        for a in arm_names
        if not RunFolder(run_dir(out, c, a, s)).finished()
    ]


def prepare(out: Path, cells: list[Cell], config: Path, sets: list[str], log=print) -> dict:
    """Train and plant every cell's prior once, before the runs (which would otherwise wait on one
    another's cache lock); the achieved exact rates go to ``OUT/priors.json``."""
    from banel_ray import tasks

    path = out / "priors.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    for c in cells:
        cfg = C.load(str(config), [*sets, *c.sets()])
        task = tasks.build(cfg["task"], cfg["task_options"])
        task.prepare(progress=log)
        done[c.name] = dict(task.planted(), cell=c.name, m=cfg["samples_per_round"])
        done[c.name]["successes_per_round"] = done[c.name]["base"] * cfg["samples_per_round"]
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(done, indent=2, sort_keys=True))
    return done


def run_all(out: Path, jobs: list[tuple], config: Path, sets: list[str], parallel: int, retries: int, log=print) -> int:
    """Run the jobs, ``parallel`` at once; a failed run is resumed up to ``retries`` times.
    Returns how many still failed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    todo = [(j, 0) for j in jobs]
    live: list[tuple] = []
    failed = 0
    while todo or live:
        while todo and len(live) < parallel:
            (cell, arm, seed), tries = todo.pop(0)
            d = run_dir(out, cell, arm, seed)
            d.parent.mkdir(parents=True, exist_ok=True)
            logf = open(d.parent / f"{arm}_s{seed}.log", "a")
            p = subprocess.Popen(
                command(out, cell, arm, seed, config, sets), stdout=logf, stderr=subprocess.STDOUT, cwd=REPO, env=env
            )
            live.append((p, logf, (cell, arm, seed), tries))
            log(f"[map] start {cell.name}/{arm}_s{seed} ({len(todo)} queued)")
        time.sleep(1)
        for item in list(live):
            p, logf, job, tries = item
            if p.poll() is None:
                continue
            live.remove(item)
            logf.close()
            name = f"{job[0].name}/{job[1]}_s{job[2]}"
            if p.returncode == 0:
                log(f"[map] done {name}")
            elif tries < retries:
                log(f"[map] {name} exit {p.returncode}: resuming it")
                todo.append((job, tries + 1))
            else:
                log(f"[map] {name} exit {p.returncode}: failed (log beside its run folder)")
                failed += 1
    return failed


EPILOG = """examples:
  python -m tuning.planted_map --out results/when-banel-wins --q 1e-2,3e-3,1e-3,3e-4,1e-4 \\
      --s 0.1,0.5,1 --e 0,qs --seeds 0-3 --parallel 2
  python -m tuning.planted_map --out /tmp/map --q 1e-2 --s 1 --e 0 --methods banel,random \\
      --set rounds=2 --set budget=100 --set samples_per_round=50 --set pool_size=100
  python -m tuning.planted_map --out results/when-banel-wins --report-only
"""


def main(argv=None) -> int:
    p = Parser(prog="python -m tuning.planted_map", description=__doc__.split("\n\n")[0], epilog=EPILOG)
    p.add_argument("--out", required=True, help="folder for runs/, priors.json and the report")
    p.add_argument("--q", default="1e-2,1e-3,1e-4", help="the prior's feature rates (comma-separated)")
    p.add_argument("--s", default="0.1,0.5,1", help="shares of the feature's mass that succeed")
    p.add_argument("--e", default="0,qs", help="featureless floors: numbers, or qs for q*s")
    p.add_argument("--methods", default=DEFAULT_ARMS, help=f"arms, from {', '.join(ARMS)}")
    p.add_argument("--seeds", default="0-2", help="run seeds: comma-separated or a range a-b")
    p.add_argument("--config", default=str(CONFIG), help="the YAML every run starts from")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (one per core)")
    p.add_argument("--retries", type=int, default=1, help="resumes of a failed run")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from OUT/runs")
    a = p.parse_args(argv)
    out = Path(a.out)
    from tuning import planted_report

    if a.report_only:
        print(planted_report.build(out))
        return 0
    try:
        cells, arm_names, seed_list = grid(a.q, a.s, a.e), arms(a.methods), seeds(a.seeds)
        for c in cells:
            for arm in arm_names:  # every cell x arm validated before anything is trained or run
                C.load(a.config, [*a.set, *c.sets(), *ARMS[arm]])
    except C.ConfigError as e:
        return fail(str(e))
    say = lambda s: print(s, flush=True)  # noqa: E731
    prepare(out, cells, Path(a.config), a.set, say)
    jobs = pending(out, cells, arm_names, seed_list)
    say(f"[map] {len(cells)} cells x {len(arm_names)} arms x {len(seed_list)} seeds: {len(jobs)} runs to do")
    failed = run_all(out, jobs, Path(a.config), a.set, max(a.parallel, 1), a.retries, say)
    print(planted_report.build(out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

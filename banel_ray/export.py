"""``python -m banel_ray.export RUN_DIR [--round N] --out DIR``: a round's generator as a Hugging Face folder.

A run's product is its generator, but its checkpoints hold only weights in the run's own layout.
This writes round N's generator (default: the last complete round; 0: the prior) as a folder that
``transformers.AutoModelForCausalLM.from_pretrained`` loads without banel_ray:
``config.json``, ``model.safetensors``, ``generation_config.json``, the tokenizer files where the
task's prior has them, and ``banel_ray.json`` (the run, round and generator version it came from).
The weights come from the run's checkpoint store, loaded into the task's prior architecture.
Runs in this process (no Ray).
"""

from __future__ import annotations

import sys
from pathlib import Path

from banel_ray.cli import Parser, fail
from banel_ray.core.run_folder import RunFolder, RunFolderError

EPILOG = """examples:
  python -m banel_ray.export runs/addition_attack-20261201-120000 --out exported/final
  python -m banel_ray.export RUN_DIR --round 15 --out exported/round15
  python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('exported/final')"
"""

# what a Hugging Face tokenizer saves beside a model (tokenizer.save_pretrained)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)


class ExportError(ValueError):
    """Bad input: one line naming what is wrong and what is allowed."""


def run_config(run_dir: Path, trust_run_folder: bool = False) -> dict:
    """The run's config.json, refusing code it names that this package does not ship (a run folder
    is data: banel_ray/trust.py) unless the user trusts the folder."""
    from banel_ray import config as C
    from banel_ray import trust

    folder = RunFolder(run_dir)
    try:
        cfg = folder.config(require=("task",))
    except RunFolderError as e:
        raise ExportError(str(e)) from None
    why = None if trust_run_folder else trust.refusal(cfg, str(folder.config_path), sends_data=False)
    if why:
        raise ExportError(why)
    return dict(C.defaults(), **cfg)


def export(run_dir: Path, out: Path, round_: int | None = None, trust_run_folder: bool = False) -> dict:
    """Write round ``round_``'s generator (None: the last complete round) to ``out``; returns what
    ``banel_ray.json`` records. Raises ExportError for bad input, before anything is written."""
    from banel_ray import config as C
    from banel_ray import preflight, tasks
    from banel_ray.models import load_model, load_state, save_model

    run_dir, out = Path(run_dir), Path(out)
    cfg = run_config(run_dir, trust_run_folder)
    rc = C.sections(cfg)
    store = RunFolder(run_dir).store(rc.checkpoint.dir)
    kept = store.rounds()
    allowed = ", ".join(["0 (the prior)", *map(str, kept)])
    if round_ is None:
        state = store.runner_state()
        if not state:
            raise ExportError(f"{run_dir} has no complete checkpoint yet; allowed: --round 0 (the prior)")
        round_ = int(state["round"])
    elif round_ != 0 and round_ not in kept:
        raise ExportError(f"round {round_} of {run_dir} is not kept; allowed: --round {allowed}")
    if round_ > 0 and (rc.method == "banel_sequential" or rc.mode == "sequential"):
        raise ExportError(
            f"{run_dir} is a sequential run (Algorithm 1): its generator is the prior behind rejection regions, "
            f"not one model; allowed: --round 0 (the prior)"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out} is not empty; allowed: a new or empty folder")
    tmp = out.with_name(out.name + ".tmp")  # save_model writes there first
    if tmp.exists():
        raise ExportError(f"{tmp} exists (an export cut short?); allowed: remove it, or another --out")
    why = preflight.write_problem(out)
    if why:
        raise ExportError(f"--out {out} cannot be written ({why}); allowed: a writable folder")

    task = tasks.build(rc.task, rc.task_options)
    prior_dir = Path(task.prepare(progress=lambda s: None))
    model, version = load_model(prior_dir), 0
    found = store.generator(store.path(round_)) if round_ > 0 else None
    if found is not None:  # else the method never changed the generator: it is the prior
        version, weights = found
        load_state(model, weights)
    info = {
        "exported_from": str(run_dir.resolve()),
        "round": round_,
        "generator_version": version,
        "task": rc.task,
        "task_options": rc.task_options,
        "method": rc.method,
        "seed": rc.seed,
    }
    files = [prior_dir / f for f in TOKENIZER_FILES if (prior_dir / f).is_file()]
    save_model(model, out, extra=info, files=files)
    return info


def main(argv=None) -> int:
    p = Parser(prog="python -m banel_ray.export", description=__doc__.split("\n\n")[0].strip(), epilog=EPILOG)
    p.add_argument("run_dir", help="a run folder (config.json and checkpoints/)")
    p.add_argument("--round", type=int, help="the round to export (0: the prior; default: the last complete round)")
    p.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")
    p.add_argument(
        "--trust-run-folder",
        action="store_true",
        help="import the code (task class, oracle functions) the folder's config names (run folders are data)",
    )
    a = p.parse_args(argv)
    if a.round is not None and a.round < 0:
        return fail(f"--round {a.round}: allowed: 0 (the prior) or a kept round")
    try:
        info = export(Path(a.run_dir), Path(a.out), a.round, a.trust_run_folder)
    except ExportError as e:
        return fail(str(e))
    print(
        f"round {info['round']} of {a.run_dir} (generator version {info['generator_version']}) written to {a.out}; "
        f"load it with transformers.AutoModelForCausalLM.from_pretrained({str(a.out)!r})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

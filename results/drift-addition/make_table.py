"""The drift-control table of docs/addition.md from the run folders in this directory:
python results/drift-addition/make_table.py > results/drift-addition/table.md"""

from pathlib import Path

from banel_ray.core.run_folder import RunFolder

R = Path(__file__).resolve().parent  # the run folders' summaries, metrics and evaluations, copied here
rows, traj = [], []
for name in [
    "d8_support_s0",
    "d8_support_s1",
    "d8_support_s2",
    "d8_support_s3",
    "d8_support_s4",
    "d8_none_s0",
    "d8_none_s1",
    "d8_none_s2",
    "d8_kl01_s0",
    "d8_kl01_s1",
    "d8_kl01_s2",
    "d8_numprior_s0",
    "d8_numprior_s1",
    "d8_numprior_s2",
    "d8_reset_s0",
    "d8_reset_s1",
    "d8_reset_s2",
    "d8_fdecay_s0",
    "d8_fdecay_s1",
    "d8_fdecay_s2",
    "d8_lrdecay_s0",
    "d8_lrdecay_s1",
    "d8_lrdecay_s2",
    "d8_seq_s0",
    "d8_seq_s1",
    "d8_seq_s2",
]:
    run = RunFolder(R / name)
    s = run.summary()
    f = run.largest_eval(s["final_fresh"])  # a later, larger evaluation replaces the run's own
    base = 0.012886
    arm = {
        "support": "support -6",
        "none": "none",
        "kl01": "KL 0.1, no support",
        "numprior": "prior numerator, no support",
        "reset": "generator.reset, no support",
        "fdecay": "filter decay 2 -> 1, no support",
        "lrdecay": "generator lr decay 5e-4 -> 5e-5, no support",
        "seq": "Algorithm 1 (sequential), no support",
    }[name.split("_")[1]]
    seed = name[-1]
    wf = 1 - f.get("modes", {}).get("malformed", {}).get("share", 0)
    lz = f.get("modes", {}).get("leading_zero", {}).get("share", 0)
    draws = f"{f['n']:,}"
    if "drawn_from_prior" in f:  # Algorithm 1: p0 through every region, rejection-sampled
        draws = f"{f['n']:,} accepted of {f['drawn_from_prior']:,} p0 draws"
    if f["n"] == 0 or ("drawn_from_prior" in f and f["n"] < 100):
        wf = lz = float("nan")
    rows.append(
        f"| {arm} | {seed} | {f['rate']:.4f} [{f['lo']:.4f}, {f['hi']:.4f}] | {draws} | {f['rate'] / base:.1f}x | {wf:.3f} | {lz:.3f} | {s['successes']:,} | {s['nres']:,} |"
    )
    t = []
    for m in run.metrics():
        if "pre_oracle_acceptance" in m:  # Algorithm 1: its evaluations hold a handful of draws; show
            if m["round"] % 5 == 0:  # the share of p0 its regions still accept
                t.append(f"accept {m['pre_oracle_acceptance']:.1e}")
        elif m.get("eval"):
            t.append(f"{m['eval']['rate']:.3f}")
    traj.append(f"| {arm} | {seed} | " + " | ".join(t) + " |")
print(
    "| control | seed | fresh final [95% CI] | draws | x base (1.289e-2) | well formed | leading zero | distinct successes | NREs |"
)
print("|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
print()
print("| control | seed | r5 | r10 | r15 | r20 | r25 | r30 |")
print("|---|---|---|---|---|---|---|---|")
print("\n".join(traj))

"""The protocol's DrNAS search (seed 0), as bench/search_vs_random.py --methods drnas would run it."""
import argparse, sys
from pathlib import Path
sys.path.insert(0, "bench")
import search_vs_random as P
a = argparse.Namespace(out=Path("runs/search_vs_random"), data=Path("data/brain"), space="A", nodes=3,
                       search_preset="cpu", search_set={})
for seed in [int(s) for s in sys.argv[1:]] or [0]:
    g = P.searched_cell(a, "drnas", seed)
    print("argmax", seed, g.to_dict(), "all skip" if P.is_all_skip(g) else "", flush=True)
    print("perturb", seed, P.perturbed_cell(a, "drnas", seed).to_dict(), flush=True)

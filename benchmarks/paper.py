"""The paper's experiments on the larger releases: I-AutoRec and U-AutoRec on ML-1M or ML-10M, test RMSE
over random 90/10 splits (Sedhain et al. 2015, Table 1: I-AutoRec 0.831 / 0.782, U-AutoRec 0.874 / 0.867).

    python benchmarks/paper.py --release ml-1m                      # I-AutoRec, 5 splits
    python benchmarks/paper.py --release ml-10m --recipe "U-AutoRec" --repeats 1
    python benchmarks/paper.py --release ml-1m --generated          # offline: made-up data of that shape

The release is downloaded from GroupLens (checksum-verified) into data/raw/ on first use. Training uses
the sparse path in mini-batches; see notebook 05 for what to expect and how long it takes.
"""

import argparse

import numpy as np

from autorec_utils.fetch import fetch_movielens
from autorec_utils.generate import generate_ratings
from autorec_utils.load import load_ratings
from autorec_utils.recipes import RECIPES
from autorec_utils.releases import RELEASES
from autorec_utils.train import pick_device, random_splits_rmse

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", default="ml-1m", choices=["ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m"])
    plain = [name for name, recipe in RECIPES.items() if recipe.family == "ratings" and not recipe.residual]
    parser.add_argument("--recipe", default="I-AutoRec", choices=plain)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=None, help="at most this many (default: the recipe's, with early stopping)")
    parser.add_argument("--generated", action="store_true", help="made-up ratings of the release's shape (no download)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.generated:
        ratings = generate_ratings(*RELEASES[args.release].shape, seed=args.seed)
    else:
        ratings = load_ratings(fetch_movielens(release=args.release).path, release=args.release)
    print(f"{args.release}{' (generated)' if args.generated else ''}: {len(ratings):,} ratings; {args.recipe}, "
          f"batch {args.batch_size}, on {pick_device()}")
    options = {"epochs": args.epochs} if args.epochs else {}
    results = random_splits_rmse(ratings, args.recipe, repeats=args.repeats, seed=args.seed, sparse=True,
                                 batch_size=args.batch_size, **options)
    print(results.to_string())
    n = len(results)
    t = T_975.get(n - 1, 1.96)  # Student's t for a 95 % interval from n splits
    half_width = t * results.RMSE.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    print(f"test RMSE {results.RMSE.mean():.4f} ± {half_width:.4f} (95 % interval over {len(results)} splits)")


if __name__ == "__main__":
    main()

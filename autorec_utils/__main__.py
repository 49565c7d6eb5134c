"""python -m autorec_utils: fetch MovieLens-100K, train AutoRec (or load its checkpoint), print a user's top-K.

Examples:
    python -m autorec_utils                       # U-AutoRec on u1, top 10 for user 196
    python -m autorec_utils --user 42 -k 5 --variant I
    python -m autorec_utils --retrain --epochs 50 --checkpoint my_model.pt
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

from .checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint
from .evaluate import score
from .fetch import fetch_movielens
from .load import load_movies, load_users
from .recommend import top_k
from .releases import DATA_DIR_ENV, SPLITS, display_path
from .splits import load_split
from .train import train_autorec

VARIANTS = {"U": "U-AutoRec (best)", "I": "I-AutoRec"}


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


class OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineErrors(prog="python -m autorec_utils", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", type=positive_int, default=196, help="MovieLens user id (1-943; default 196)")
    parser.add_argument("-k", "--top", dest="k", type=positive_int, default=10, help="how many movies (default 10)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="U", type=str.upper,
                        help="U: U-AutoRec (rows are users), I: I-AutoRec (rows are movies); default U")
    parser.add_argument("--split", choices=SPLITS, default="u1", help="canonical split to train on (default u1)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="most epochs to train (default: the recipe's, with early stopping)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint to load, or to write after training (default data/checkpoints/<variant>_autorec_<split>.pt)")
    parser.add_argument("--retrain", action="store_true", help="train even if the checkpoint exists")
    parser.add_argument("--include-unknown", action="store_true", help="allow movies titled 'unknown'")
    parser.add_argument("--data-dir", type=Path, default=None, help=f"data folder (default: ${DATA_DIR_ENV} or the repo's data/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
        movielens = fetch_movielens(args.data_dir, progress=not args.quiet, verbose=False)
        say(str(movielens))
        movies = load_movies(movielens.path)
        path = args.checkpoint or checkpoint_path(f"{args.variant.lower()}_autorec_{args.split}", args.data_dir)
        if path.is_file() and not args.retrain:
            trained = load_checkpoint(path, data_path=movielens.path)
            if trained.matrix.by != ("user" if args.variant == "U" else "item"):
                raise CheckpointError(f"{display_path(path)} holds the other variant; pass --variant "
                                      f"{'U' if trained.matrix.by == 'user' else 'I'} or --retrain.")
            say(f"loaded {display_path(path)}")
        else:
            train, test = load_split(args.split, movielens.path)
            extra = {"epochs": args.epochs} if args.epochs else {}
            trained = train_autorec(train, VARIANTS[args.variant], user_ids=load_users(movielens.path).user_id,
                                    item_ids=movies.item_id, seed=args.seed, progress=not args.quiet, **extra)
            say(f"trained {VARIANTS[args.variant]} in {trained.seconds:.0f} s; "
                f"test RMSE on {args.split}: {score(trained.predictor, test)['RMSE']:.4f}")
            save_checkpoint(trained, path, split=args.split)
            say(f"saved {display_path(path)}")
        with warnings.catch_warnings(record=True) as notes:  # "only N movies are left ...": one plain line
            warnings.simplefilter("always")
            recommendations = top_k(trained, args.user, movies, k=args.k, include_unknown=args.include_unknown)
        for note in notes:
            print(f"note: {note.message}", file=sys.stderr)
    except (ValueError, FileNotFoundError, OSError) as error:  # bad input: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Top {len(recommendations)} for user {args.user} ({VARIANTS[args.variant]}, trained on {args.split}):")
    table = recommendations[["rank", "title", "genres", "predicted_rating"]].rename(columns={"predicted_rating": "predicted"})
    with pd.option_context("display.width", 120, "display.max_colwidth", 60):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m autorec_utils: fetch MovieLens-100K, train AutoRec (or load its checkpoint), print a user's top-K.

By default the model learns from all 100,000 ratings, so that a user's list uses every rating they made.
Which model? --variant L (EASE, a list autoencoder, chapter 06) makes the best lists: about 1.8 times
popularity's NDCG@10 on u1, where the rating models do not beat popularity. --variant I (I-AutoRec, the
default) makes the best rating predictions (chapter 03: test RMSE 0.90) and shows the predicted stars;
--variant U is the residual U-AutoRec (RMSE 0.92).

Examples:
    python -m autorec_utils                        # I-AutoRec on all ratings, top 10 for user 196
    python -m autorec_utils --user 42 -k 5 --variant U
    python -m autorec_utils --split u1 --retrain --epochs 50 --checkpoint my_model.pt
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

from .checkpoint import CheckpointError, checkpoint_path, load_checkpoint, load_or_train
from .checks import positive_int_argument
from .evaluate import score
from .fetch import fetch_movielens
from .load import load_movies, load_users
from .recipes import RECIPES, VARIANTS
from .recommend import model_name, top_k
from .releases import DATA_DIR_ENV, SPLITS, display_path
from .splits import load_split

__all__ = ["main"]

CHECKPOINT_NAMES = {"I": "i_autorec", "U": "u_autorec", "L": "ease"}  # data/checkpoints/<name>_<split>.pt


def a_path(text: str) -> Path:
    return Path(text).expanduser()  # "~/x" means the home folder, also after "--option=~/x"


class OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineErrors(prog="python -m autorec_utils", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", type=positive_int_argument, default=196, help="MovieLens user id (1-943; default 196)")
    parser.add_argument("-k", "--top", dest="k", type=positive_int_argument, default=10, help="how many movies (default 10)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default=None, type=str.upper,
                        help="I: I-AutoRec (default: the best rating predictions), U: the residual U-AutoRec, "
                             "L: EASE (the best lists; scores, not stars)")
    parser.add_argument("--split", choices=("all", *SPLITS), default=None,
                        help="train on all ratings (default) or on a canonical split's training part (then the test RMSE is printed)")
    parser.add_argument("--epochs", type=positive_int_argument, default=None, help="most epochs to train (default: the recipe's, with early stopping)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    parser.add_argument("--checkpoint", type=a_path, default=None,
                        help="checkpoint to load, or to write after training (default data/checkpoints/<variant>_autorec_<split>.pt)")
    parser.add_argument("--retrain", action="store_true", help="train even if a matching checkpoint exists")
    parser.add_argument("--include-unknown", action="store_true", help="allow movies titled 'unknown'")
    parser.add_argument("--data-dir", type=a_path, default=None, help=f"data folder (default: ${DATA_DIR_ENV} or the repo's data/)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    try:
        with warnings.catch_warnings(record=True) as notes:  # library warnings become one-line notes
            warnings.simplefilter("always")
            movielens = fetch_movielens(args.data_dir, progress=not args.quiet, verbose=False)
            movies = load_movies(movielens.path)
            if args.checkpoint is not None and args.checkpoint.is_file() and not args.retrain:
                trained = named_checkpoint(args, movielens.path, say)
            else:
                trained = train_or_load(args, movielens.path, movies, say)
            recommendations = top_k(trained, args.user, movies, k=args.k, include_unknown=args.include_unknown)
        for note in notes:  # shown even with --quiet: they say something about the answer
            print(f"note: {note.message}", file=sys.stderr)
    except (ValueError, OSError) as error:  # bad input or an unusable file: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    name = recipe_name(trained)
    trained_on = {"all": "all ratings", None: "a custom training set"}.get(trained.split, f"split {trained.split}")
    print(f"Top {len(recommendations)} for user {args.user} ({name}, trained on {trained_on}):")
    table = recommendations[["rank", "title", "genres", recommendations.columns[-1]]].rename(columns={"predicted_rating": "predicted"})
    with pd.option_context("display.width", 120, "display.max_colwidth", 60):
        text = table.to_string(index=False, float_format=lambda v: f"{v:.2f}")
    encoding = sys.stdout.encoding or "ascii"
    print(text.encode(encoding, errors="replace").decode(encoding))  # accented titles on an ASCII terminal
    return 0


def recipe_name(trained) -> str:
    """The name of the trained model's recipe in RECIPES (its epoch limit aside), else its kind."""
    for name, known in RECIPES.items():
        same_epochs = {"epochs": trained.recipe.epochs} if hasattr(known, "epochs") and hasattr(trained.recipe, "epochs") else {}
        if type(known) is type(trained.recipe) and known.replace(**same_epochs) == trained.recipe:
            return name
    return f"{model_name(trained.predictor)}, settings of your own"


def variant_of(trained) -> str:
    return "L" if trained.recipe.family == "lists" else "I" if trained.matrix.by == "item" else "U"


def named_checkpoint(args, data_path, say):
    """The checkpoint the user named, as it is (its own split and settings); an option that contradicts
    it is an error, not silently ignored."""
    trained = load_checkpoint(args.checkpoint, data_path=data_path)
    clashes = [f"--{option} {given}" for option, given, stored in (
        ("split", args.split, trained.split), ("variant", args.variant, variant_of(trained)),
        ("epochs", args.epochs, getattr(trained.recipe, "epochs", None)), ("seed", args.seed, trained.seed))
        if given is not None and given != stored]
    if clashes:
        raise CheckpointError(f"{display_path(args.checkpoint)} was trained otherwise than {', '.join(clashes)} asks; drop "
                              "those options to use it, or add --retrain to train a new model in its place.")
    say(f"loaded {display_path(args.checkpoint)}")
    return trained


def train_or_load(args, data_path, movies, say):
    """The checkpoint for these options (by default data/checkpoints/<name>_<split>.pt) when it was trained
    with them, else a model trained now and saved there."""
    split, variant = args.split or "all", args.variant or "I"
    if variant == "L" and args.epochs is not None:
        raise ValueError("--variant L (EASE) is fitted in closed form: it takes no --epochs.")
    train, test = load_split(split, data_path)
    path = args.checkpoint if args.checkpoint is not None else checkpoint_path(f"{CHECKPOINT_NAMES[variant]}_{split}", args.data_dir)
    settings = {"epochs": args.epochs} if args.epochs else {}
    trained, how = load_or_train(path, train, VARIANTS[variant], split=split, seed=args.seed or 0, data_path=data_path,
                                 retrain=args.retrain, progress=not args.quiet, user_ids=load_users(data_path).user_id,
                                 item_ids=movies.item_id, **settings)
    say(how)
    if len(test) and trained.predictor.rates:
        say(f"test RMSE on {split}: {score(trained.predictor, test)['RMSE']:.4f}")
    return trained


if __name__ == "__main__":
    sys.exit(main())

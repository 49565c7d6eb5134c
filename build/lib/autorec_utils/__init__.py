"""The code the AutoRec chapters teach, one small module per idea. Read a module beside the chapter that teaches it.

THE CORE: chapters 00-04. Importing any of these loads no elective module (tests/test_structure.py holds it).

    module          chapter  what it holds
    releases.py     01       the MovieLens releases as one table; where the data folder is
    fetch.py        01       a verified download (or the offline rebuild of mirror.py)
    mirror.py       01       ML-100K rebuilt from two pinned PyPI packages, for a machine without GroupLens
    load.py         01       the files read into typed DataFrames
    splits.py       01, 03   train/test splits that leak nothing; the validation draw early stopping watches
    matrix.py       01       the rating matrix and its mask, with the MovieLens id <-> position maps
    checks.py       all      the checks at every function's edge, one message each
    model.py        02       AutoRec and its masked objective: the model, on one screen
    recipes.py      03       every model's settings as a frozen dataclass, the tuned ones by name, and FAMILIES:
                             the one table of how each family of models is trained and how a loaded one predicts
    train.py        03       fit(): the one training loop, for every model; train_autorec runs a recipe
    evaluate.py     03, 04   RMSE, the baselines, ranking metrics, and Predictor: the interface every trained
                             model offers (checked by mypy)
    recommend.py    04       top-K, a new person's list, similar movies, embeddings: written against Predictor
    checkpoint.py   03, 04   save and load any trained model, every part checked
    plots.py        01-07    the figures drawn more than once
    __main__.py     04       python -m autorec_utils: one command from the data to a user's list

THE ELECTIVES: each builds on the core; the core reaches one only through the dotted paths of recipes.FAMILIES
(and, for the sparse path, inside the three functions of train.py that build, train or predict from a sparse
matrix), imported when a model of its kind is trained or loaded.

    sparse.py       05       the sparse path: a CSR matrix, products whose cost grows with the ratings
    generate.py     05       made-up ratings shaped like MovieLens, at any scale
    ddp.py          05b      data-parallel training: the lesson (init, deal out the rows, DDP, the loss scaled)
    distributed.py  05b      python -m autorec_utils.distributed: the launcher, its command line and its faults
    topn.py         06       the list autoencoders (Mult-DAE, Mult-VAE, EASE), trained by the same fit()
    variants.py     07       deeper AutoRecs: more layers, SELU, the local kernel layer
    ensemble.py     07       averaging rating models, the blend chosen on validation ratings
    leaderboard.py  07       what choosing on the test ratings is worth; the published numbers
"""

__all__ = ["__version__"]

__version__ = "0.1.0"

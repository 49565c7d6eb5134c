"""Recipes: every setting that decides how a model is built and trained, as one small frozen dataclass per
model family, and the named recipes that were tuned on validation ratings (chapters 03 and 06).

A recipe means the same thing everywhere: ``train_autorec(train, "I-AutoRec")`` and
``train_list_model(train, "Mult-VAE")`` both train the tuned settings, a checkpoint stores the recipe it was
trained with, and a change goes through ``recipe.replace(hidden=200)`` (``dataclasses.replace``), which
refuses a setting the model does not take and checks every value.

``FAMILIES`` is the one table of how each family of models is trained and how a loaded one predicts; each
recipe class names its model class. Both name the electives' code (chapters 06-07) by module path, so it is
imported when a recipe of theirs is trained or loaded, never when the core is: the recipes of the list
models, deeper AutoRecs and ensembles are plain settings, kept here so every recipe has one meaning.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from .checks import check_choice, check_number, check_positive_int, is_whole
from .model import ACTIVATIONS, AutoRec

if TYPE_CHECKING:  # for the type checker only
    from .evaluate import RatingModel

__all__ = ["FAMILIES", "RECIPES", "VARIANTS", "AutoRecRecipe", "DeepAutoRecRecipe", "EASERecipe", "EnsembleRecipe",
           "Family", "MultDAERecipe", "MultVAERecipe", "Recipe", "get_recipe", "load_name", "recipe_classes"]


def load_name(path: str) -> Any:
    """The object a dotted path names, e.g. ``"autorec_utils.topn.MultDAE"``; its module is imported now,
    the first time it is needed (chapter 03)."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Family:
    """How the models of one family are trained and how a loaded one makes its predictions (chapter 03):
    ``trainer(train, recipe, seed=, progress=, user_ids=, item_ids=) -> Trained`` and
    ``predictor(model, matrix, bias, recipe) -> Predictor``, both as dotted paths."""

    trainer: str
    predictor: str

    @property
    def trainer_name(self) -> str:
        """The trainer and where to import it from, for messages: "train_autorec (autorec_utils.train)"."""
        module, _, name = self.trainer.rpartition(".")
        return f"{name} ({module})"

    def train(self, *args, **kwargs):
        return load_name(self.trainer)(*args, **kwargs)

    def make_predictor(self, *args):
        return load_name(self.predictor)(*args)


FAMILIES = {
    "ratings": Family("autorec_utils.train.train_autorec", "autorec_utils.train.predictor_for"),  # stars (chapter 03)
    "lists": Family("autorec_utils.topn.train_list_model", "autorec_utils.topn.list_predictor"),  # lists (chapter 06)
    "ensembles": Family("autorec_utils.ensemble.train_ensemble", "autorec_utils.ensemble.ensemble_predictor"),  # (07)
}


@dataclass(frozen=True)
class Recipe:
    """The settings of one model family; subclasses list them as fields with their defaults."""

    family: ClassVar[str] = ""  # a key of FAMILIES: "ratings" (stars, chapter 03), "lists" (06), "ensembles" (07)
    model_path: ClassVar[str] = ""  # the model class it trains, as a dotted path

    @classmethod
    def model_class(cls) -> type[nn.Module]:
        """The model class this recipe trains (imported now, if it is an elective's)."""
        return load_name(cls.model_path)

    def replace(self, **changes) -> Recipe:
        """A copy with some settings changed, e.g. ``RECIPES["I-AutoRec"].replace(hidden=200)``."""
        unknown = sorted(set(changes) - set(self.settings()))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no setting(s) {unknown}; its settings are "
                             f"{', '.join(self.settings())}.")
        return dataclasses.replace(self, **changes)

    def settings(self) -> dict:
        """The settings as a plain dict (what a checkpoint stores)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_settings(name: str, settings: dict) -> Recipe:
        """The recipe of class ``name`` with ``settings`` (as stored by a checkpoint); every value checked."""
        classes = recipe_classes()
        if name not in classes or not isinstance(settings, dict):
            raise ValueError(f"{name!r} is not a recipe of this package ({', '.join(classes)}).")
        return classes[name]().replace(**settings)

    def _check(self, ints=(), optional_ints=(), fractions=(), positive=(), non_negative=()) -> None:
        """Check the named fields, and store whole numbers as int and real ones as float (numpy's included)."""
        for name in ints:
            check_positive_int(name, getattr(self, name))
        for name in optional_ints:
            check_positive_int(name, getattr(self, name), none_means="full batch")
        for name in fractions:
            check_number(name, getattr(self, name), 0, 1, high_open=True)
        for name in positive:
            check_number(name, getattr(self, name), 0, low_open=True)
        for name in non_negative:
            check_number(name, getattr(self, name), 0)
        for name in (*ints, *optional_ints):
            if is_whole(getattr(self, name)):
                object.__setattr__(self, name, int(getattr(self, name)))
        for name in (*fractions, *positive, *non_negative):
            object.__setattr__(self, name, float(getattr(self, name)))


@dataclass(frozen=True)
class AutoRecRecipe(Recipe):
    """U- or I-AutoRec (chapter 03): the model (``by``, ``hidden``, ``activation``, dropouts), the objective
    (``l2`` = lambda, ``residual``: learn r - the bias baseline), the loop (``fit``'s settings, early stopping
    on ``validation_fraction`` of the training ratings) and what a user or movie without training ratings
    gets (``fallback``: "mean" or "bias").

    The defaults are a plain starting point (the paper's sigmoid, lambda 1, Adam at 1e-3), not a tuned recipe:
    the tuned ones are ``RECIPES["U-AutoRec"]``, ``RECIPES["I-AutoRec"]`` and the residual U-AutoRec."""

    family: ClassVar[str] = "ratings"
    model_path: ClassVar[str] = "autorec_utils.model.AutoRec"
    activations: ClassVar[tuple[str, ...]] = tuple(ACTIVATIONS)  # the activations the model takes
    by: str = "user"
    hidden: int = 500
    activation: str = "sigmoid"
    dropout: float = 0.0
    input_dropout: float = 0.0
    l2: float = 1.0
    residual: bool = False
    fallback: str = "mean"
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_decay: float = 1.0
    batch_size: int | None = None
    epochs: int = 2000
    patience: int = 20
    validation_fraction: float = 0.05

    def __post_init__(self):
        check_choice("by", self.by, ("user", "item"))
        check_choice("activation", self.activation, self.activations)
        check_choice("fallback", self.fallback, ("mean", "bias"))
        check_choice("optimizer", self.optimizer, ("adam", "rprop", "lbfgs"))
        check_choice("residual", self.residual, (True, False))
        self._check(ints=("hidden", "epochs", "patience"), optional_ints=("batch_size",),
                    fractions=("dropout", "input_dropout", "validation_fraction"), positive=("lr",), non_negative=("l2",))
        check_number("lr_decay", self.lr_decay, 0, 1, low_open=True)
        object.__setattr__(self, "lr_decay", float(self.lr_decay))
        object.__setattr__(self, "residual", bool(self.residual))
        if self.batch_size is not None and self.optimizer != "adam":
            raise ValueError(f"{self.optimizer} is a full-batch method: use batch_size=None, or optimizer='adam'.")

    def build_model(self, n_inputs: int) -> RatingModel:
        """The untrained model this recipe trains, reading vectors of length ``n_inputs`` (chapter 03)."""
        return AutoRec(n_inputs, self.hidden, self.activation, self.dropout, self.input_dropout)


@dataclass(frozen=True)
class MultDAERecipe(Recipe):
    """Mult-DAE (chapter 06): the model (``hidden``, input ``dropout``), Adam (``lr``, ``weight_decay``,
    ``batch_size`` users per step) and early stopping on the NDCG@10 of ``validation_fraction`` of the
    training ratings (a held-out rating of ``relevant_from`` stars or more counts as a hit).

    The defaults are the paper's (Liang et al. 2018: 200 units, dropout 0.5), not the tuned recipe:
    ``RECIPES["Mult-DAE"]`` holds what benchmarks/topn.py chose on validation ratings (600 units, no dropout)."""

    family: ClassVar[str] = "lists"
    model_path: ClassVar[str] = "autorec_utils.topn.MultDAE"
    hidden: int = 200
    dropout: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 200
    patience: int = 20
    validation_fraction: float = 0.05
    relevant_from: float = 4.0

    def __post_init__(self):
        self._check(ints=("hidden", "batch_size", "epochs", "patience"), fractions=("dropout", "validation_fraction"),
                    positive=("lr", "relevant_from"), non_negative=("weight_decay",))


@dataclass(frozen=True)
class MultVAERecipe(MultDAERecipe):
    """Mult-VAE (chapter 06): Mult-DAE's settings, plus the weight ``beta`` of the KL term, reached linearly
    over the first ``anneal_epochs`` epochs."""

    model_path: ClassVar[str] = "autorec_utils.topn.MultVAE"
    beta: float = 0.2
    anneal_epochs: int = 50

    def __post_init__(self):
        super().__post_init__()
        self._check(ints=("anneal_epochs",), non_negative=("beta",))


@dataclass(frozen=True)
class EASERecipe(Recipe):
    """EASE (chapter 06): the ridge penalty ``l2`` (lambda), fitted in closed form. It has no epochs to choose,
    so by default it is fitted on every training rating; with ``validation_fraction`` > 0 that share is held
    back and its NDCG@10 recorded (hits: ``relevant_from`` stars or more), to choose lambda. The default
    lambda is a starting point; ``RECIPES["EASE"]`` holds the one chosen on validation ratings."""

    family: ClassVar[str] = "lists"
    model_path: ClassVar[str] = "autorec_utils.topn.EASE"
    l2: float = 200.0
    validation_fraction: float = 0.0
    relevant_from: float = 4.0

    def __post_init__(self):
        self._check(fractions=("validation_fraction",), positive=("l2", "relevant_from"))


@dataclass(frozen=True)
class DeepAutoRecRecipe(AutoRecRecipe):
    """An ``AutoRecRecipe`` for ``variants.DeepAutoRec`` (chapter 07): ``depth`` hidden layers of ``hidden`` units
    each, local kernel layers of dimension ``kernel`` (0: plain dense layers) whose squared kernels weigh
    ``kernel_penalty`` against the squared weights in the penalty, and SELU among the activations."""

    model_path: ClassVar[str] = "autorec_utils.variants.DeepAutoRec"
    activations: ClassVar[tuple[str, ...]] = (*ACTIVATIONS, "selu")  # variants.DEEP_ACTIVATIONS
    depth: int = 2
    kernel: int = 0
    kernel_penalty: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        self._check(ints=("depth",), non_negative=("kernel_penalty",))
        if not is_whole(self.kernel) or self.kernel < 0:
            raise ValueError(f"kernel must be 0 (plain layers) or the kernel's dimension d > 0, got {self.kernel!r}.")
        object.__setattr__(self, "kernel", int(self.kernel))

    def build_model(self, n_inputs: int) -> RatingModel:
        from .variants import DeepAutoRec  # chapter 07's elective, imported when a deep recipe is built

        return DeepAutoRec(n_inputs, [self.hidden] * self.depth, self.activation, self.dropout, self.input_dropout,
                           self.kernel, self.kernel_penalty)


@dataclass(frozen=True)
class EnsembleRecipe(Recipe):
    """An average of rating models (chapter 07): each of the ``members`` (rating recipes, or their names) is
    trained ``seeds`` times (one number for all, or one per member) -- with the training seed s, s + 1, ... --
    and every run holds back the *same*
    validation ratings (seed s's draw), so that the blend is chosen on ratings no member has fitted: a member's
    runs are averaged with equal weights, and the members blended with the weights (multiples of
    ``blend_step``, summing to 1) that give the lowest RMSE on those validation ratings.
    Train it with ``ensemble.train_ensemble``; a checkpoint stores every member."""

    family: ClassVar[str] = "ensembles"
    model_path: ClassVar[str] = "autorec_utils.ensemble.AutoRecEnsemble"
    members: tuple = ("I-AutoRec", "U-AutoRec (residual)")
    seeds: int | tuple = 5
    blend_step: float = 0.05

    def __post_init__(self):
        members = self.members
        if isinstance(members, (str, dict, Recipe)):
            members = (members,)
        if not isinstance(members, (tuple, list)) or not 1 <= len(members) <= 4:
            raise ValueError(f"members must list 1 to 4 rating recipes (or their names), got {self.members!r}.")
        resolved = []
        for member in members:
            if isinstance(member, dict) and set(member) == {"class", "settings"}:  # as settings() stores it
                member = Recipe.from_settings(member["class"], member["settings"])
            elif isinstance(member, str):
                member = get_recipe(member)
            if not isinstance(member, AutoRecRecipe):
                raise ValueError(f"an ensemble's members are rating recipes (AutoRecRecipe, DeepAutoRecRecipe or the name of "
                                 f"one), got {member!r}.")
            resolved.append(member)
        fractions = {member.validation_fraction for member in resolved}
        if len(fractions) != 1:
            raise ValueError(f"the members hold back different shares of ratings for validation ({sorted(fractions)}); "
                             "give them one validation_fraction, so that the blend is chosen on the same ratings.")
        object.__setattr__(self, "members", tuple(resolved))
        seeds = self.seeds
        if isinstance(seeds, (tuple, list)):
            if len(seeds) != len(resolved):
                raise ValueError(f"seeds gives {len(seeds)} numbers for {len(resolved)} members; give one number, or one "
                                 "per member.")
            for count in seeds:
                check_positive_int("seeds", count)
            seeds = tuple(int(count) for count in seeds)
        else:
            check_positive_int("seeds", seeds)
            seeds = int(seeds)
        object.__setattr__(self, "seeds", seeds)
        check_number("blend_step", self.blend_step, 0, 1, low_open=True)
        object.__setattr__(self, "blend_step", float(self.blend_step))

    @property
    def validation_fraction(self) -> float:
        return self.members[0].validation_fraction

    @property
    def seed_counts(self) -> tuple:
        """How many seeds each member is trained with."""
        return self.seeds if isinstance(self.seeds, tuple) else (self.seeds,) * len(self.members)

    def settings(self) -> dict:
        """The settings as plain values: each member as its class name and settings."""
        return {"members": [{"class": type(member).__name__, "settings": member.settings()} for member in self.members],
                "seeds": list(self.seeds) if isinstance(self.seeds, tuple) else self.seeds, "blend_step": self.blend_step}


# Chosen on validation ratings of the canonical u1 split: benchmarks/tune.py prints the rating models'
# grid and benchmarks/rmse.py their test figures; benchmarks/topn.py does both for the list models.
RECIPES: dict[str, Recipe] = {
    "U-AutoRec": AutoRecRecipe(by="user", hidden=500, l2=100.0, lr=1e-2, patience=10, fallback="mean"),
    "U-AutoRec (residual)": AutoRecRecipe(by="user", hidden=200, l2=100.0, lr=3e-3, patience=10, residual=True,
                                          fallback="bias"),
    "I-AutoRec": AutoRecRecipe(by="item", hidden=500, l2=100.0, lr=1e-2, lr_decay=0.99, patience=10, fallback="bias"),
    "Mult-DAE": MultDAERecipe(hidden=600, dropout=0.0, lr=1e-3),
    "Mult-VAE": MultVAERecipe(hidden=600, dropout=0.2, beta=0.2, lr=1e-3),
    "EASE": EASERecipe(l2=500.0),
    # Chapter 07: two deeper models, no better alone than I-AutoRec (benchmarks/leaderboard.py measures each change).
    # The local kernel model is GLocal-K's first stage (its u1 lambdas: 20 and 0.006 for half the squared error).
    "I-AutoRec (local kernel)": DeepAutoRecRecipe(by="item", hidden=500, depth=2, kernel=5, kernel_penalty=0.006 / 20,
                                                  l2=40.0, optimizer="lbfgs", lr=1.0, patience=20, epochs=1000,
                                                  fallback="bias"),
    "U-AutoRec (deep)": DeepAutoRecRecipe(by="user", hidden=500, depth=2, l2=40.0, optimizer="lbfgs", lr=1.0, patience=50,
                                          epochs=1000, fallback="bias"),
}
# The blend of four models that err differently (chapter 07; benchmarks/rmse.py tunes the three Adam-trained
# members per fold). The two-layer U-AutoRec could take the plain one's place, at twice its cost and no gain on
# u1's validation ratings.
RECIPES["AutoRec ensemble"] = EnsembleRecipe(members=tuple(RECIPES[name] for name in (
    "I-AutoRec", "I-AutoRec (local kernel)", "U-AutoRec", "U-AutoRec (residual)")), seeds=1)


# The command lines' --variant letters, one meaning in every command line (python -m autorec_utils and
# python -m autorec_utils.distributed): the best rating model, the residual U-AutoRec, the best list model.
VARIANTS = {"I": "I-AutoRec", "U": "U-AutoRec (residual)", "L": "EASE"}


def get_recipe(recipe: str | Recipe, family: str | None = None, **changes) -> Recipe:
    """A recipe by name (any case) or as given, with ``changes`` applied; ``family`` ("ratings" or "lists")
    says which kind the caller trains, so that a recipe of the other kind is refused with the way out."""
    if isinstance(recipe, str):
        by_name = {name.lower(): value for name, value in RECIPES.items()}
        if recipe.lower() not in by_name:
            raise ValueError(f"there is no recipe {recipe!r}; the named ones are {', '.join(map(repr, RECIPES))}, "
                             "or pass a recipe object such as AutoRecRecipe(...).")
        recipe = by_name[recipe.lower()]
    if not isinstance(recipe, Recipe):
        raise ValueError(f"a recipe is a name from RECIPES or a recipe object (AutoRecRecipe, ...), got {recipe!r}.")
    if family is not None and recipe.family != family:
        raise ValueError(f"{type(recipe).__name__} is a recipe for a {recipe.family} model: train it with "
                         f"{FAMILIES[recipe.family].trainer_name}.")
    return recipe.replace(**changes) if changes else recipe


def recipe_classes() -> dict[str, type[Recipe]]:
    """Every recipe class of the package, by name (what a checkpoint stores)."""
    return {cls.__name__: cls for cls in (AutoRecRecipe, DeepAutoRecRecipe, MultDAERecipe, MultVAERecipe, EASERecipe,
                                          EnsembleRecipe)}

"""Shared code for the AutoRec tutorial notebooks: data, model, training, evaluation, plots."""

__version__ = "0.1.0"

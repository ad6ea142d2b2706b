"""Figures for the book: data (:mod:`psetae.plots.data`), encoders (:mod:`psetae.plots.encoders`),
losses (:mod:`psetae.plots.losses`) and training results (:mod:`psetae.plots.training`).

Each function takes plain arrays or package objects and returns a matplotlib ``Figure``.
"""

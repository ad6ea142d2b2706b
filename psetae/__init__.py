"""PSE-TAE: Pixel-Set Encoders and Temporal Self-Attention for satellite image time series.

The package that goes with the book: the models (:mod:`psetae.models`), the focal loss
(:mod:`psetae.losses`), the pixel-set data format (:mod:`psetae.data`), metrics,
training, prediction, plots and a command line (``python -m psetae``).
"""

__version__ = "0.1.0"

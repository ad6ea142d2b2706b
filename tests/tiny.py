"""A tiny PSE-TAE configuration for end-to-end tests on 3 channels and 3 classes."""

# Tiny widths: a training run takes a fraction of a second per epoch.
TINY_MODEL = {
    "mlp1": [3, 8, 8],
    "mlp2": [20, 16],
    "n_head": 2,
    "d_k": 4,
    "mlp3": [32, 16],
    "mlp4": [16, 8, 3],
}

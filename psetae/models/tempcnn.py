"""PSE + TempCNN: 1-D convolutions over time after the Pixel-Set Encoder (a baseline of the L-TAE paper).

The TempCNN of Pelletier et al. (2019) on the PSE's sequence: Conv1d -> BatchNorm1d -> ReLU
blocks over the dates ("same" padding), the (channels, T) map flattened, then an MLP. The
flattening gives each date its own weights, which ties the model to T = ``len_max_seq`` dates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from psetae.models.classifier import PseClassifier
from psetae.models.config import ConfigError, ModelConfig
from psetae.models.days import DayEncoding
from psetae.models.mlp import mlp

__all__ = ["PseTempCnn", "PseTempCnnConfig", "TempCnnEncoder"]


@dataclass
class PseTempCnnConfig(ModelConfig):
    """PSE + TempCNN: 158,484 parameters by default (PSE 19,936; TempCNN 135,744; decoder 2,804).

    The defaults are those of the L-TAE repository's parameter-matched comparison
    (``kernels=[64, 64]``, ``mlp3=[1536, 64]``, ``mlp4=[64, 32, 20]``), so that every encoder of
    the comparison has about 150k parameters. That repository's script defaults (convolutions
    32, 32, 128; MLP 128, 128) flatten a 128 x 24 map, which makes the first Linear alone
    393,344 parameters (469,716 in all): ``PseTempCnnConfig(kernels=[32, 32, 128],
    mlp3=[3072, 128, 128], mlp4=[128, 64, 32, 20])``.

    Attributes
    ----------
    kernels
        Output channels of the convolutions.
    kernel_size
        Width of every convolution over time (odd, padded to keep T dates).
    mlp3
        The MLP after flattening (``mlp3[0] = kernels[-1] * len_max_seq``), ReLU after each.
    positional
        Add the sinusoidal encoding of each date's day to the input.
    T
        Period of the positional encoding.
    """

    kernels: list[int] = field(default_factory=lambda: [64, 64])
    kernel_size: int = 3
    mlp3: list[int] = field(default_factory=lambda: [1536, 64])
    mlp4: list[int] = field(default_factory=lambda: [64, 32, 20])
    positional: bool = True
    T: float = 1000.0

    @property
    def temporal_width(self) -> int:
        return int(self.mlp3[-1])

    def fit_widths(self) -> None:
        self.mlp3 = [int(self.kernels[-1]) * int(self.len_max_seq), *self.mlp3[1:]]


class TempCnnEncoder(nn.Module):
    """(B, T, in_channels) sequences of ``len_max_seq`` dates -> (B, mlp3[-1]).

    The reference's TempConv builds its day table from the T given days but reads rows 1..T
    (each date gets the next date's encoding); here each date is encoded with its own day.

    Parameters
    ----------
    in_channels
        Width of the input sequence (the PSE's output).
    kernels, kernel_size
        Channels of the convolutions and their (odd) width.
    mlp3
        Widths of the MLP; ``mlp3[0] = kernels[-1] * len_max_seq``.
    len_max_seq
        T, the number of dates.
    positional, T, positions
        Whether to add the day encoding, its period and the fixed days (or None).

    Raises
    ------
    ConfigError
        If the widths do not fit or the kernel size is even.
    """

    def __init__(
        self,
        in_channels: int = 128,
        kernels: Sequence[int] = (32, 32, 128),
        kernel_size: int = 3,
        mlp3: Sequence[int] = (3072, 128, 128),
        len_max_seq: int = 24,
        positional: bool = True,
        T: float = 1000.0,
        positions: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (to keep T dates), got {kernel_size}")
        if mlp3[0] != kernels[-1] * len_max_seq:
            raise ConfigError(
                f"mlp3[0] = {mlp3[0]} must be kernels[-1] * len_max_seq = "
                f"{kernels[-1]} * {len_max_seq}"
            )
        self.len_max_seq = len_max_seq
        self.days = DayEncoding(in_channels, T, positions) if positional else None
        widths = [in_channels, *kernels]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm1d(c_out),
                nn.ReLU(),
            ]
        self.convs = nn.Sequential(*layers)
        self.mlp3 = mlp(mlp3, relu_last=True)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Encode (B, T, in_channels) with the days ``positions`` (B, T) or None.

        Raises
        ------
        ValueError
            If T is not ``len_max_seq``.
        """
        B, T, _ = x.shape
        if T != self.len_max_seq:
            raise ValueError(
                f"the TempCNN is built for {self.len_max_seq} dates, the input has {T}"
            )
        if self.days is not None:
            x = x + self.days(x, positions)  # (B, T, d)
        h = self.convs(x.transpose(1, 2))  # (B, kernels[-1], T): convolutions over time
        return self.mlp3(h.flatten(1))  # (B, mlp3[-1])


class PseTempCnn(PseClassifier):
    """PSE + TempCNN, a baseline of the L-TAE paper; no attention (``return_attention`` raises)."""

    config_class = PseTempCnnConfig

    def build_temporal_encoder(self, c: PseTempCnnConfig) -> nn.Module:
        return TempCnnEncoder(
            c.mlp2[-1], c.kernels, c.kernel_size, c.mlp3, c.len_max_seq, c.positional, c.T,
            c.positions,
        )  # fmt: skip

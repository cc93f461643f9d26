"""Frames spoiled on purpose: known failures for QC to catch.

QC is only tested if it meets the failures it exists for. A :class:`Spoil` names one
defect in one IFU; :class:`~musewise.inm.model.InstrumentModel` (``spoils=``),
:func:`~musewise.inm.night.simulate_night` (``spoils=``) and ``musewise simulate
--spoil KIND:IFU[:AMOUNT]`` write it into every frame of the type it concerns:

=============  ========  ==================================================  =================
kind           frames    what happens in the IFU's CCD                       amount (default)
=============  ========  ==================================================  =================
``lamp_off``   FLAT,     the flat lamp light is scaled by ``amount`` (0: the  level (0.02)
               ILLUM     lamp is off; 0.02: a lamp at 2 %, still traceable)
``hot_column`` BIAS      one column (``column``, trimmed x, 0-based) gains     e- per pixel (400)
                         ``amount`` electrons in every row (a charge-trap
                         column), as in a bias read during a CCD glitch
``arc_shift``  ARC       the arc light moves by ``amount`` pixels along the    pixels (3)
                         dispersion (rows): a mis-set grating/wavelength
                         zero point
=============  ========  ==================================================  =================

Every frame of the kind's types is spoiled (a master combines several frames, so a
defect in one of them would be rejected, as it should be, by the combination).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ..exceptions import ConfigurationError
from ..vocabulary import FrameType


class SpoilKind(str, enum.Enum):
    """The defects the instrument model can put in a frame on purpose."""

    #: The flat-field lamp light of one IFU scaled down (0: off).
    LAMP_OFF = "lamp_off"
    #: A column of one CCD with extra charge in a bias.
    HOT_COLUMN = "hot_column"
    #: The arc lines of one IFU moved along the dispersion.
    ARC_SHIFT = "arc_shift"


#: Frame types each kind spoils.
FRAME_TYPES = {
    SpoilKind.LAMP_OFF: (FrameType.FLAT, FrameType.ILLUM),
    SpoilKind.HOT_COLUMN: (FrameType.BIAS,),
    SpoilKind.ARC_SHIFT: (FrameType.ARC,),
}
#: Default ``amount`` of each kind (see the module docstring for its unit).
DEFAULT_AMOUNT = {SpoilKind.LAMP_OFF: 0.02, SpoilKind.HOT_COLUMN: 400.0, SpoilKind.ARC_SHIFT: 3.0}


@dataclass(frozen=True)
class Spoil:
    """One defect put on purpose into the frames of one IFU.

    Parameters
    ----------
    kind : SpoilKind or str
    ifu : int
        IFU (1-24) whose CCD is spoiled.
    amount : float, optional
        Lamp level (``lamp_off``, dimensionless), electrons per pixel (``hot_column``,
        e-) or shift (``arc_shift``, pixels along the dispersion); default
        :data:`DEFAULT_AMOUNT`.
    column : int
        Column of a ``hot_column`` (trimmed image, 0-based; 1000 is in the first
        quadrant, away from the slice edges' steep gradients).
    """

    kind: SpoilKind
    ifu: int
    amount: float | None = None
    column: int = 1000

    def __post_init__(self):
        try:
            object.__setattr__(self, "kind", SpoilKind(getattr(self.kind, "value", self.kind)))
        except ValueError:
            raise ConfigurationError(f"unknown spoil {self.kind!r}; one of "
                                     f"{[k.value for k in SpoilKind]}") from None
        if not 1 <= int(self.ifu) <= 24:
            raise ConfigurationError(f"spoil {self.kind.value}: IFU must be 1-24, got {self.ifu}")
        object.__setattr__(self, "ifu", int(self.ifu))
        amount = DEFAULT_AMOUNT[self.kind] if self.amount is None else float(self.amount)
        if self.kind is SpoilKind.LAMP_OFF and not 0.0 <= amount <= 1.0:
            raise ConfigurationError(f"lamp_off level must be 0-1, got {amount}")
        if self.kind is SpoilKind.HOT_COLUMN and amount < 0:
            raise ConfigurationError(f"hot_column charge must be >= 0 e-, got {amount}")
        object.__setattr__(self, "amount", amount)

    @classmethod
    def parse(cls, text: str) -> "Spoil":
        """A spoil from ``KIND:IFU[:AMOUNT]`` (the CLI's ``--spoil``), e.g. ``hot_column:2:800``.

        Raises
        ------
        ConfigurationError
            Malformed text, unknown kind, IFU out of range.
        """
        parts = str(text).split(":")
        if len(parts) not in (2, 3):
            raise ConfigurationError(f"spoil {text!r}: write KIND:IFU[:AMOUNT], e.g. lamp_off:2")
        try:
            ifu = int(parts[1])
            amount = float(parts[2]) if len(parts) == 3 else None
        except ValueError:
            raise ConfigurationError(f"spoil {text!r}: IFU and AMOUNT must be numbers") from None
        return cls(parts[0], ifu, amount)

    def applies_to(self, ifu: int, frame_type: FrameType) -> bool:
        """Whether this spoil changes the CCD of ``ifu`` in a frame of ``frame_type``."""
        return int(ifu) == self.ifu and FrameType(frame_type) in FRAME_TYPES[self.kind]

    def apply(self, electrons: np.ndarray) -> None:
        """Spoil an image of expected electrons (trimmed, rows along the dispersion) in place."""
        if self.kind is SpoilKind.LAMP_OFF:
            electrons *= np.float32(self.amount)
        elif self.kind is SpoilKind.HOT_COLUMN:
            electrons[:, self.column] += np.float32(self.amount)
        else:
            n = int(round(self.amount))
            if n > 0:
                electrons[n:] = electrons[:-n].copy()
                electrons[:n] = electrons[n]
            elif n < 0:
                electrons[:n] = electrons[-n:].copy()
                electrons[n:] = electrons[n - 1]

    def describe(self) -> str:
        unit = {SpoilKind.LAMP_OFF: "x lamp", SpoilKind.HOT_COLUMN: "e-", SpoilKind.ARC_SHIFT: "pix"}[self.kind]
        where = f" at column {self.column}" if self.kind is SpoilKind.HOT_COLUMN else ""
        return f"{self.kind.value} IFU {self.ifu} ({self.amount:g} {unit}{where})"


def as_spoils(spoils) -> tuple[Spoil, ...]:
    """Spoils from Spoil objects or ``KIND:IFU[:AMOUNT]`` strings (None: none)."""
    return tuple(s if isinstance(s, Spoil) else Spoil.parse(s) for s in (spoils or ()))


__all__ = ["DEFAULT_AMOUNT", "FRAME_TYPES", "Spoil", "SpoilKind", "as_spoils"]

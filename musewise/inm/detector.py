"""The MUSE CCDs: geometry, quadrants, read-out properties and digitisation.

One CCD per IFU, read through four output ports. Unbinned raw layout, in numpy
``(y, x)`` order, 0-based (the facts the MUSE DRS 2.8 relies on):

* 4 quadrants of 2048 x 2056 (x, y) data pixels, each with a 32 px prescan and a
  32 px overscan along both axes, so the raw image is 4224 x 4240 (x, y) and the
  trimmed image 4096 x 4112.
* Raw x: ``[pre 32][Q1/Q4 data 2048][ovsc 32][ovsc 32][Q2/Q3 data 2048][pre 32]``.
* Raw y: ``[pre 32][Q1/Q2 data 2056][ovsc 32][ovsc 32][Q4/Q3 data 2056][pre 32]``.
* Output ports (``ESO DET OUTi X/Y``, 1-based trimmed coordinates):
  1 = (1, 1) bottom left, 2 = (4096, 1) bottom right, 3 = (4096, 4112) top right,
  4 = (1, 4112) top left.

Noise model (the documented approximation that makes full frames fast)
---------------------------------------------------------------------
Drawing 430 million normal and Poisson deviates per 24-IFU frame would take
minutes. Instead :class:`NoiseBank` holds one seeded bank of 2**24 standard normal
float32 deviates; each quadrant of each frame takes a contiguous run of it at a
random offset (and a random sign) drawn from the frame's own generator. Pixels of
two frames therefore never share a deviate at the same position (the offsets
differ), so combining frames averages the noise down as it should; the only
artefact is that a frame's noise field is a shifted copy of part of the bank,
which no reduction step can notice.

Photon noise is Gaussian with variance equal to the expected electrons, added to
Gaussian read noise: ``N(e, e + RON**2)``. This is the normal approximation to the
Poisson law; it is excellent above ~20 e- (flats, arcs, sky) and keeps the right
mean and variance at low counts (dark current), where only the shape differs.
Values are rounded to the nearest ADU and clipped to 0..65535 (saturation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import InvalidArgumentError

#: Data pixels per quadrant along x and y.
QUAD_NX, QUAD_NY = 2048, 2056
#: Prescan and overscan width per quadrant and axis (pixels).
PRESCAN, OVERSCAN = 32, 32
#: Raw image size (x, y) in pixels.
RAW_NX = 2 * (QUAD_NX + PRESCAN + OVERSCAN)  # 4224
RAW_NY = 2 * (QUAD_NY + PRESCAN + OVERSCAN)  # 4240
#: Trimmed image size (x, y) in pixels.
TRIM_NX, TRIM_NY = 2 * QUAD_NX, 2 * QUAD_NY  # 4096, 4112
#: Output port positions (ESO DET OUTi X / Y), 1-based trimmed coordinates.
PORTS = {1: (1, 1), 2: (TRIM_NX, 1), 3: (TRIM_NX, TRIM_NY), 4: (1, TRIM_NY)}
QUADRANTS = (1, 2, 3, 4)
#: Full well / ADC limit (ADU).
SATURATION_ADU = 65535

_BLOCK_NY, _BLOCK_NX = RAW_NY // 2, RAW_NX // 2  # raw pixels belonging to one port


def quadrant_block(q: int) -> tuple[slice, slice]:
    """Raw-image ``(y, x)`` slices of everything read through port ``q``.

    Includes the quadrant's data, prescan and overscan pixels.
    """
    left, bottom = PORTS[q][0] == 1, PORTS[q][1] == 1
    xs = slice(0, _BLOCK_NX) if left else slice(_BLOCK_NX, RAW_NX)
    ys = slice(0, _BLOCK_NY) if bottom else slice(_BLOCK_NY, RAW_NY)
    return ys, xs


def quadrant_data(q: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Data region of port ``q``: ``(raw (y, x) slices, trimmed (y, x) slices)``."""
    left, bottom = PORTS[q][0] == 1, PORTS[q][1] == 1
    rx0 = PRESCAN if left else RAW_NX - PRESCAN - QUAD_NX
    ry0 = PRESCAN if bottom else RAW_NY - PRESCAN - QUAD_NY
    tx0 = 0 if left else QUAD_NX
    ty0 = 0 if bottom else QUAD_NY
    return ((slice(ry0, ry0 + QUAD_NY), slice(rx0, rx0 + QUAD_NX)),
            (slice(ty0, ty0 + QUAD_NY), slice(tx0, tx0 + QUAD_NX)))


def _local(data: tuple[slice, slice], block: tuple[slice, slice]) -> tuple[slice, slice]:
    return tuple(slice(d.start - b.start, d.stop - b.start) for d, b in zip(data, block))


def trimmed_quadrant(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Port number (1-4) of trimmed 0-based pixel coordinates ``x``, ``y``."""
    right = np.asarray(x) >= QUAD_NX
    top = np.asarray(y) >= QUAD_NY
    return np.where(top, np.where(right, 3, 4), np.where(right, 2, 1))


@dataclass(frozen=True)
class ReadoutProperties:
    """Read-out properties of one output port of one CCD.

    Attributes
    ----------
    gain : float
        Conversion gain (e-/ADU), as in ``ESO DET OUTi GAIN``.
    ron : float
        Read-out noise (e-), as in ``ESO DET OUTi RON``.
    bias : float
        Mean bias level (ADU).
    """

    gain: float
    ron: float
    bias: float

    @property
    def ron_adu(self) -> float:
        """Read-out noise in ADU."""
        return self.ron / self.gain


def readout(ifu: int, q: int) -> ReadoutProperties:
    """Read-out properties of port ``q`` of the CCD of ``ifu`` (fixed per detector).

    Values are plausible for the MUSE e2v CCDs (gain ~1.1 e-/ADU, RON ~2.6 e-,
    bias ~1000 ADU) and differ slightly but deterministically between ports
    so that per-quadrant processing is exercised.
    """
    if not 1 <= ifu <= 24 or q not in QUADRANTS:
        raise InvalidArgumentError(f"no port {q} on IFU {ifu}")
    k = (ifu * 7 + q * 3) % 11
    return ReadoutProperties(gain=1.08 + 0.01 * ((k + q) % 5),
                             ron=2.45 + 0.08 * (k % 5),
                             bias=1000.0 + 15.0 * q + 3.0 * ifu + 0.5 * k)


#: Dark current (e-/pixel/hour) of the MUSE CCDs, before hot pixels.
DARK_CURRENT = 1.0


def hot_pixels(ifu: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Fixed hot pixels of a CCD: flat indices into the trimmed image and rates (e-/h)."""
    r = np.random.default_rng(10_000 + ifu)  # a detector property, not a frame one
    idx = r.choice(TRIM_NX * TRIM_NY, n, replace=False)
    rate = r.uniform(50.0, 3000.0, n)
    return idx, rate


class NoiseBank:
    """A seeded bank of standard-normal float32 deviates drawn from at random offsets.

    Parameters
    ----------
    seed : int
        Seed of the bank.
    size : int, optional
        Number of deviates (default 2**24, 64 MB); must exceed one raw quadrant.
    """

    def __init__(self, seed: int, size: int = 1 << 24):
        need = _BLOCK_NX * _BLOCK_NY
        if size < 2 * need:
            raise InvalidArgumentError(f"noise bank of {size} deviates is smaller than 2 quadrants")
        self.values = np.random.default_rng([seed, 0x5EED]).standard_normal(size, np.float32)

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, float]:
        """A contiguous run of ``n`` deviates and a random sign (+1 or -1)."""
        o = int(rng.integers(0, self.values.size - n))
        return self.values[o:o + n], (1.0 if rng.random() < 0.5 else -1.0)


class Digitiser:
    """Turns an image of expected electrons into raw FITS bytes of one CCD.

    Work buffers are kept between calls so digitising a frame allocates nothing.

    Parameters
    ----------
    bank : NoiseBank
        Source of the noise deviates.
    """

    def __init__(self, bank: NoiseBank):
        self.bank = bank
        self._blk = np.empty((_BLOCK_NY, _BLOCK_NX), np.float32)
        self._tmp = np.empty((QUAD_NY, QUAD_NX), np.float32)

    def digitise(self, ifu: int, electrons: np.ndarray | None, rng: np.random.Generator,
                 out: np.ndarray | None = None, bias_drift: float = 0.0) -> np.ndarray:
        """Read out one CCD.

        Parameters
        ----------
        ifu : int
            IFU number (1-24): selects the port properties.
        electrons : ndarray of float32, shape (4112, 4096), or None
            Expected detected electrons per trimmed pixel (e-); None for a bias.
            Must be >= 0.
        rng : numpy.random.Generator
            The frame's generator (chooses the noise-bank offsets).
        out : ndarray of uint16, shape (4240, 4224), optional
            Buffer to fill (reused between IFUs).
        bias_drift : float, optional
            Offset added to every port's bias level for this frame (ADU).

        Returns
        -------
        ndarray of uint16, shape (4240, 4224)
            The FITS on-disk bytes: big-endian ``value - 32768`` (``BZERO = 32768``),
            i.e. ready to be written as a ``BITPIX = 16`` image.
        """
        if out is None:
            out = np.empty((RAW_NY, RAW_NX), np.uint16)
        buf, tmp = self._blk, self._tmp
        for q in QUADRANTS:
            p = readout(ifu, q)
            block = quadrant_block(q)
            noise, sign = self.bank.draw(rng, buf.size)
            np.multiply(noise.reshape(buf.shape), sign * p.ron_adu, out=buf)
            if electrons is not None:
                raw_s, trim_s = quadrant_data(q)
                e = electrons[trim_s]
                noise2, sign2 = self.bank.draw(rng, tmp.size)
                np.sqrt(e, out=tmp)                           # photon noise sigma (e-)
                tmp *= noise2.reshape(tmp.shape)
                (np.add if sign2 > 0 else np.subtract)(e, tmp, out=tmp)
                tmp *= 1.0 / p.gain
                buf[_local(raw_s, block)] += tmp
            buf += p.bias + bias_drift + 0.5   # +0.5: the cast below truncates (values >= 0)
            np.clip(buf, 0, SATURATION_ADU, out=buf)
            np.copyto(out[block], buf, casting="unsafe")
        # FITS stores unsigned 16 bit as signed big-endian with BZERO = 32768:
        # subtracting 32768 modulo 2**16 is flipping the top bit.
        out ^= 0x8000
        out.byteswap(inplace=True)
        return out


def decode_raw(stored: np.ndarray) -> np.ndarray:
    """Inverse of the on-disk encoding of :meth:`Digitiser.digitise` (for tests)."""
    v = stored.byteswap()
    v ^= 0x8000
    return v

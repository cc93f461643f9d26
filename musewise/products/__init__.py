"""The products layer: how musewise reads MUSE products, whoever reads them.

A foundation below ``ingest``, ``recipes``, ``dpu``, ``qc``, ``web`` and
``widgets``: it imports nothing of musewise but :mod:`musewise.exceptions` and
:mod:`musewise.vocabulary`, and reads files only (no archive, no configuration).

* :class:`MuseCube` (:mod:`.cube`) - a cube read lazily from disk: planes,
  spaxel and region spectra with variance, narrow bands and the chunked
  white-light image (:func:`white_light` for any cube array);
* :class:`Image` (:mod:`.image`), :class:`Spectrum` (:mod:`.spectrum`) - small
  in-memory products with FITS writers and readers;
* :mod:`.wcs` - the spectral axis (``CD3_3``, ``PC3_3 * CDELT3`` or ``CDELT3``,
  any ``CUNIT3``), the celestial keywords, the pixel scale;
* :mod:`.lines` - the one list of night-sky and emission lines;
* :mod:`.ifu` - which IFU an extension, a file or a product belongs to;
* :mod:`.testing` - writers of small test products and raw frames.
"""

from __future__ import annotations

from .cube import MuseCube, white_light
from .image import Image
from .spectrum import Spectrum
from .wcs import celestial_header, pixel_scale_arcsec, spectral_axis

__all__ = ["Image", "MuseCube", "Spectrum", "celestial_header", "pixel_scale_arcsec", "spectral_axis",
           "white_light"]

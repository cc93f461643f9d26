"""musewise: data management and analysis for MUSE integral-field spectroscopy.

The layers, each importing only those before it::

    inm (simulated raw frames) -> ingest -> archive (registry + datastore)
        -> dpu (recipes, runs, provenance) -> qc -> release

Start with :class:`musewise.archive.Archive`::

    >>> from musewise import Archive
    >>> arch = Archive.open()                      # doctest: +SKIP
    >>> arch.query(category="MASTER_BIAS", ifu=1)  # doctest: +SKIP
"""

__version__ = "0.1.0"

from .config import MusewiseConfig  # noqa: E402
from .exceptions import MusewiseError  # noqa: E402


def __getattr__(name):
    # Heavy sub-packages load on first use so `import musewise` stays fast.
    if name == "Archive":
        from .archive import Archive

        return Archive
    raise AttributeError(f"module 'musewise' has no attribute {name!r}")


__all__ = ["Archive", "MusewiseConfig", "MusewiseError", "__version__"]

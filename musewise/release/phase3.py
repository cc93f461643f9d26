"""Released science cubes in the shape of ESO Phase 3 science data products.

ESO's archive, and the archives that follow it, take an IFU cube as a
``SCIENCE.CUBE.IFS`` product of the ESO Science Data Products standard (ESO-044286,
formerly GEN-SPE-ESO-33000-5335; :data:`SDP_VERSION`): the primary header says what
the product is (``PRODCATG``), which files go with it (``ASSONi``/``ASSOCi``: the
white-light image, ``ANCILLARY.IMAGE.WHITELIGHT``), which files it was made from
(``PROVi``), and the observation, calibration and quality figures (``MJD-OBS``,
``WAVELMIN``, ``SPEC_RES``, ``SKY_RES`` ...); each extension carries the ``HDUCLASn``
classification and the ``SCIDATA``/``ERRDATA``/``QUALDATA`` pointers between data,
variance and quality; every HDU carries ``DATASUM`` and ``CHECKSUM``.

Decisions
---------
* **The archive's bytes stay as they are.** Products are archived exactly as the
  pipeline wrote them and their files are write-once. The export writes a Phase 3
  *copy* of each science cube and of its white-light image: headers with the Phase 3
  keywords, every data block byte for byte (:func:`musewise.products.fitsio.copy_with_headers`).
  Other products (calibrations, pixel tables, images of no released cube) are exported
  unchanged: the standard has no category for them.
* **Decided when the release is frozen.** :func:`plan_release` computes every
  keyword when the release is created, from the product's own headers, its archive
  record, its QC values and its provenance graph, and stores them in the manifest
  entry (``phase3``: ``primary``, ``extensions``, ``missing``, ``notes``), with the
  sha256 and size of the file they give and the FITS data sum of each HDU
  (``datasums``: the export then reads each data block once). A later QC run, a new pipeline version or an
  invalidated input does not change an exported release: exporting twice writes the
  same bytes, and the export refuses a file whose sha256 is not the frozen one.
* **Verification as before.** The manifest keeps each product's archived ``sha256``
  (what :func:`~musewise.release.core.release_status` checks in the archive) and adds
  the exported file's in ``phase3.sha256``, which
  :func:`~musewise.release.core.verify_folder` checks in a folder
  (:func:`exported_checksum`). A release frozen before this module exported the
  archived bytes, has no ``phase3`` entries and verifies as it always did.
* **Known gaps are written down, not invented.** A mandatory keyword musewise cannot
  fill (``ABMAGLIM``, ``PIXNOISE`` are not measured; ``SKY_RES`` without a QC run) is
  left out and listed in ``phase3.missing``; the Phase 3 validator will name it too.

Where each keyword comes from is listed in ``docs/releases.md``. Units: wavelengths
in nm, times in s, MJD in days, angles in deg, seeing in arcsec.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .. import __version__
from ..products.fitsio import copy_with_headers, open_fits
from ..products.wcs import spectral_axis
from ..exceptions import InvalidFrameError, ReleaseVerificationError
from .obscore import ReleaseConfig, muse_resolving_power, wcs_info

#: Version of the ESO Science Data Products standard the headers follow (``HDUVERS``).
SDP_VERSION = "SDP version 8"
#: ``PRODCATG`` of a science cube.
PRODCATG_CUBE = "SCIENCE.CUBE.IFS"
#: ``PRODCATG`` (and ``ASSOCi``) of the white-light image that goes with a cube.
PRODCATG_WHITELIGHT = "ANCILLARY.IMAGE.WHITELIGHT"
#: Product categories (``ESO PRO CATG``) exported as ``SCIENCE.CUBE.IFS``.
CUBE_CATEGORIES = ("DATACUBE_FINAL", "DATACUBE_ZAP")
#: Categories of the white-light image a cube's run writes beside it.
WHITELIGHT_CATEGORIES = ("IMAGE_FOV",)
#: Raw frame types counted as the exposures a cube combines (``NCOMBINE``, ``TEXPTIME``, ``OBIDi``).
EXPOSURE_FRAME_TYPES = ("OBJECT",)
#: ``SPECSYS`` for the pipeline's ``rvcorr`` parameter (muse_scipost's default is ``bary``).
SPECSYS_OF_RVCORR = {"bary": "BARYCENT", "helio": "HELIOCEN", "geo": "GEOCENTR", "none": "TOPOCENT"}
#: Mandatory (or, for MUSE, applicable) primary keywords of a SCIENCE.CUBE.IFS: those absent go to ``missing``.
MANDATORY_CUBE = ("PRODCATG", "ASSON1", "ORIGIN", "TELESCOP", "INSTRUME", "OBJECT", "RA", "DEC", "RADESYS",
                  "EXPTIME", "TEXPTIME", "MJD-OBS", "MJD-END", "PROG_ID", "OBID1", "NCOMBINE", "OBSTECH",
                  "FLUXCAL", "PROCSOFT", "REFERENC", "PROV1", "SPECSYS", "WAVELMIN", "WAVELMAX", "SPEC_RES",
                  "SKY_RES", "ABMAGLIM", "PIXNOISE")
#: ``HDUCLAS2``/``HDUCLAS3`` of the MUSE pipeline's extensions: data, variance, pixel quality.
_EXT_CLASS = {"DATA": ("DATA", None), "STAT": ("ERROR", "MSE"), "DQ": ("QUALITY", "FLAG32BIT")}
#: Indexed primary keywords that the Phase 3 cards replace as a whole (a source's own PROV7 must not survive).
_INDEXED = re.compile(r"^(PROV|ASSON|ASSOC|ASSOM|OBID|PROGID)[0-9]+$")
#: Phase 3 pointer keyword naming each kind of extension, and what it holds.
_POINTER = {"DATA": ("SCIDATA", "science data"), "STAT": ("ERRDATA", "variance"), "DQ": ("QUALDATA", "pixel quality")}


def exported_name(entry: dict) -> str:
    """The file name of a manifest entry inside the export (what ``ASSONi`` names)."""
    return Path(entry["path"]).name


def exported_checksum(entry: dict) -> tuple[str, int]:
    """(sha256, size in bytes) of a manifest entry's file in an exported folder.

    The Phase 3 copy's when the release wrote one, else the archived product's.
    """
    p3 = entry.get("phase3")
    return (p3["sha256"], p3["size"]) if p3 else (entry["sha256"], entry["size"])


def extension_cards(extnames) -> dict[str, list]:
    """Phase 3 classification cards of a product's data, variance and quality extensions.

    Parameters
    ----------
    extnames : sequence of str
        ``EXTNAME`` of the file's extensions; those other than ``DATA``, ``STAT``,
        ``DQ`` get none.

    Returns
    -------
    dict
        ``EXTNAME -> [[keyword, value, comment], ...]``: ``HDUCLASS``, ``HDUDOC``,
        ``HDUVERS``, ``HDUCLAS1-3`` and the ``SCIDATA``/``ERRDATA``/``QUALDATA``
        pointers to the other extensions present.
    """
    present = [n for n in extnames if n in _EXT_CLASS]
    out = {}
    for name in present:
        cls2, cls3 = _EXT_CLASS[name]
        cards = [["HDUCLASS", "ESO", "class name (ESO format)"],
                 ["HDUDOC", "SDP", "ESO Science Data Products standard"],
                 ["HDUVERS", SDP_VERSION, "version of the standard"],
                 ["HDUCLAS1", "IMAGE", "data format"],
                 ["HDUCLAS2", cls2, "what this extension holds"]]
        if cls3:
            cards.append(["HDUCLAS3", cls3, "variance" if cls2 == "ERROR" else "pixel quality flags"])
        cards += [[_POINTER[other][0], other, f"extension with the {_POINTER[other][1]}"]
                  for other in present if other != name]
        out[name] = cards
    return out


def _qc_value(arch, dataset_id: int, name: str):
    """The latest QC run's value of ``name`` for a dataset, or None."""
    rows = [q for q in arch.qc(dataset_id) if q["name"] == name and q["value"] is not None]
    return max(rows, key=lambda q: q["run_id"] or 0)["value"] if rows else None


def _read(path) -> dict:
    """Primary header, data-extension header and extension names of a product file."""
    with open_fits(path, memmap=True) as h:
        data = h["DATA"] if "DATA" in h else h[0]
        return {"primary": h[0].header.copy(), "data": data.header.copy(),
                "extnames": [str(x.header.get("EXTNAME", "")).strip() for x in h[1:]]}


def _raw_frames(arch, graph) -> list:
    """The raw frames a product descends from (records): exposures first, then by time."""
    raws = [arch.get(d.id) for d in graph.ancestors() if d.visible and d.kind == "raw"]
    return sorted(raws, key=lambda r: (r.category not in EXPOSURE_FRAME_TYPES, r.mjd_obs or 0.0,
                                       r.header.get("ARCFILE") or r.filename))


def _obid(value) -> int | None:
    """An OB id as Phase 3 wants it (an integer), or None (absent, or not a number)."""
    try:
        return int(value) if value is not None and str(value).strip() else None
    except (TypeError, ValueError):
        return None


def _specsys(graph, *headers) -> str:
    for h in headers:
        if str(h.get("SPECSYS", "")).strip():
            return str(h["SPECSYS"]).strip()
    for run in graph.runs.values():
        rv = (run.parameters or {}).get("rvcorr") if run.visible else None
        if rv is not None:
            return SPECSYS_OF_RVCORR.get(str(rv).lower(), "TOPOCENT")
    return SPECSYS_OF_RVCORR["bary"]


def cube_cards(arch, rec, graph, associated=(), config: ReleaseConfig | None = None) -> dict:
    """The Phase 3 keywords of one science cube, from what the archive knows of it.

    Parameters
    ----------
    arch : Archive
    rec : DatasetRecord
        The cube (a :data:`CUBE_CATEGORIES` product).
    graph : ProvenanceGraph
        Its provenance (:meth:`Archive.provenance`): the raw frames give ``PROVi``,
        the exposures (:data:`EXPOSURE_FRAME_TYPES`) ``NCOMBINE``, ``TEXPTIME``,
        ``MJD-END`` and ``OBIDi``; ``PROG_ID`` is the product's ``ESO OBS PROG ID``.
    associated : sequence of (file name, category)
        Files of the release that go with it, as ``ASSONi``/``ASSOCi``.
    config : ReleaseConfig, optional
        ``origin`` and ``reference``; default: the archive's configuration.

    Returns
    -------
    dict
        ``prodcatg``, ``primary`` (``[keyword, value, comment]`` in header order),
        ``extensions`` (:func:`extension_cards`), ``missing`` (mandatory keywords not
        filled) and ``notes`` (why).
    """
    cfg = config or ReleaseConfig(config=arch.config.config)
    f = _read(arch.path(rec.id))
    h0, hd = f["primary"], f["data"]
    notes = []
    try:
        wcs = wcs_info(arch.path(rec.id))
    except Exception:  # as for ObsCore: a WCS astropy cannot read leaves the product unlocated
        wcs = {}
        notes.append("celestial WCS unreadable: RA/DEC from the primary header")
    try:
        wave, _air = spectral_axis(hd, int(hd.get("NAXIS3", 0)), axis=3)
    except InvalidFrameError as exc:
        wave = None
        notes.append(f"no spectral axis ({exc}): WAVELMIN, WAVELMAX, SPEC_RES not written")
    raws = _raw_frames(arch, graph)
    exposures = [r for r in raws if r.category in EXPOSURE_FRAME_TYPES]
    cards = [["PRODCATG", PRODCATG_CUBE, "data product category"]]
    for i, (name, catg) in enumerate(associated, start=1):
        cards += [[f"ASSON{i}", name, "associated file"], [f"ASSOC{i}", catg, "category of the associated file"]]
    if not associated:
        notes.append("no white-light image (IMAGE_FOV of the cube's run) in the release: ASSON1 not written")
    exptime = rec.exptime if rec.exptime is not None else h0.get("EXPTIME")
    texptime = sum(float(r.exptime or 0.0) for r in exposures) if exposures else exptime
    cards += [["ORIGIN", cfg.origin, "institution that made the product"],
              ["TELESCOP", str(h0.get("TELESCOP") or "ESO-VLT-U4"), "telescope"],
              ["INSTRUME", str(h0.get("INSTRUME") or "MUSE"), "instrument"],
              ["OBJECT", str(rec.object or h0.get("OBJECT") or ""), "target"]]
    ra = wcs.get("s_ra", h0.get("RA"))
    dec = wcs.get("s_dec", h0.get("DEC"))
    if ra is not None and dec is not None:
        cards += [["RA", float(ra), "[deg] centre of the field"], ["DEC", float(dec), "[deg] centre of the field"]]
    radesys = str(hd.get("RADESYS") or h0.get("RADESYS") or "ICRS").strip()
    cards += [["EQUINOX", 2000.0, "[yr] standard epoch"], ["RADESYS", radesys, "celestial reference frame"],
              ["TIMESYS", "UTC", "time system"]]
    if exptime is not None:
        cards.append(["EXPTIME", float(exptime), "[s] integration time per pixel"])
    if texptime is not None:
        cards.append(["TEXPTIME", float(texptime), "[s] total integration time of the exposures"])
    if rec.mjd_obs is not None:
        cards.append(["MJD-OBS", float(rec.mjd_obs), "[d] start of the first exposure"])
        ends = [r.mjd_obs + (r.exptime or 0.0) / 86400.0 for r in exposures if r.mjd_obs is not None]
        end = max(ends) if ends else rec.mjd_obs + float(exptime or 0.0) / 86400.0
        cards.append(["MJD-END", float(end), "[d] end of the last exposure"])
    if str(h0.get("ESO OBS PROG ID", "")).strip():
        cards.append(["PROG_ID", str(h0["ESO OBS PROG ID"]).strip(), "ESO programme identification"])
    obids = sorted({o for o in (_obid(r.header.get("ESO OBS ID")) for r in exposures) if o is not None})
    if not obids and _obid(h0.get("ESO OBS ID")) is not None:
        obids = [_obid(h0["ESO OBS ID"])]
    cards += [[f"OBID{i}", o, "observation block id"] for i, o in enumerate(obids, start=1)]
    if exposures:
        cards.append(["NCOMBINE", len(exposures), "number of exposures combined"])
    categories = {d.category for d in graph.datasets.values() if d.visible}
    flux = "ABSOLUTE" if "STD_RESPONSE" in categories else "UNCALIBRATED"
    pipe = rec.pipeline_version or h0.get("ESO PRO REC1 PIPE ID") or f"musewise/{__version__}"
    cards += [["OBSTECH", "IFU", "observation technique"],
              ["FLUXCAL", flux, "flux calibration"],
              ["PROCSOFT", str(pipe), "reduction software"],
              ["REFERENC", cfg.reference, "bibliographic reference"]]
    cards += [[f"PROV{i}", str(r.header.get("ARCFILE") or r.filename), "originating raw frame"]
              for i, r in enumerate(raws, start=1)]
    if graph.truncated:
        notes.append(f"provenance truncated at {graph.max_nodes} nodes: PROVi lists the frames reached")
    if any(not d.visible for d in graph.datasets.values()):
        notes.append("part of the provenance is not visible to the releasing user: PROVi lists what is")
    cards.append(["SPECSYS", _specsys(graph, hd, h0), "spectral reference frame"])
    if wave is not None and len(wave):
        centre = float(wave.min() + wave.max()) / 2
        cards += [["WAVELMIN", round(float(wave.min()) / 10.0, 6), "[nm] first wavelength (air)"],
                  ["WAVELMAX", round(float(wave.max()) / 10.0, 6), "[nm] last wavelength (air)"],
                  ["SPEC_RES", round(muse_resolving_power(centre), 1), "resolving power at the centre of the range"]]
    seeing = _qc_value(arch, rec.id, "cube.fwhm.median")
    if seeing is not None:
        cards.append(["SKY_RES", round(float(seeing), 3), "[arcsec] PSF FWHM (QC cube.fwhm.median)"])
    else:
        notes.append("no QC value cube.fwhm.median: SKY_RES not written")
    if not str(hd.get("BUNIT", "")).strip():
        notes.append("the DATA extension has no BUNIT")
    filled = {c[0] for c in cards}
    return {"prodcatg": PRODCATG_CUBE, "standard": SDP_VERSION, "primary": cards,
            "extensions": extension_cards(f["extnames"]),
            "missing": [k for k in MANDATORY_CUBE if k not in filled], "notes": notes}


def whitelight_cards(arch, rec, cube: dict) -> dict:
    """Phase 3 keywords of the white-light image of a cube: its category and the cube's general ones.

    Parameters
    ----------
    rec : DatasetRecord
        The image (a :data:`WHITELIGHT_CATEGORIES` product).
    cube : dict
        The cube's :func:`cube_cards`: ``ORIGIN``, ``TELESCOP``, ``INSTRUME``,
        ``OBJECT``, ``RA``/``DEC`` and the times are copied from it.
    """
    keep = ("ORIGIN", "TELESCOP", "INSTRUME", "OBJECT", "RA", "DEC", "EQUINOX", "RADESYS", "TIMESYS",
            "MJD-OBS", "MJD-END", "PROG_ID", "PROCSOFT")
    cards = [["PRODCATG", PRODCATG_WHITELIGHT, "data product category"]]
    cards += [c for c in cube["primary"] if c[0] in keep]
    return {"prodcatg": PRODCATG_WHITELIGHT, "standard": SDP_VERSION, "primary": cards,
            "extensions": extension_cards(_read(arch.path(rec.id))["extnames"]), "missing": [], "notes": []}


def _edit(spec: dict):
    def edit(index, header):
        if index == 0:
            cards = spec["primary"]
            for key in [k for k in header if _INDEXED.match(k)]:
                del header[key]
        else:
            cards = spec["extensions"].get(str(header.get("EXTNAME", "")).strip(), [])
        for key, value, comment in cards:
            header[key] = (value, comment)
        return header
    return edit


class _Counted:
    """A write target that keeps the sha256 and size of what passes through it."""

    def __init__(self, target=None):
        self.target, self.sha, self.size = target, hashlib.sha256(), 0

    def write(self, b: bytes) -> None:
        self.sha.update(b)
        self.size += len(b)
        if self.target is not None:
            self.target.write(b)


def write_phase3(src, spec: dict, dst=None) -> tuple[str, int, list[int]]:
    """Write the Phase 3 copy of a product (or only measure it).

    Parameters
    ----------
    src : path-like
        The archived product.
    spec : dict
        Its manifest ``phase3`` entry (:func:`cube_cards`, :func:`whitelight_cards`);
        with ``datasums`` (frozen with the release) each data block is read once.
    dst : path-like, optional
        Where to write it; None computes the checksum of what would be written.

    Returns
    -------
    (str, int, list of int)
        sha256 and size (bytes) of the copy, and the FITS data sum of each HDU.
    """
    if dst is None:
        out = _Counted()
        sums = copy_with_headers(src, out, _edit(spec), spec.get("datasums"))
        return out.sha.hexdigest(), out.size, sums
    with open(dst, "wb") as f:
        out = _Counted(f)
        sums = copy_with_headers(src, out, _edit(spec), spec.get("datasums"))
    return out.sha.hexdigest(), out.size, sums


def export_phase3(src, entry: dict, dst) -> None:
    """Write a manifest entry's Phase 3 copy to ``dst``, checking it is the file the release froze.

    Raises
    ------
    ReleaseVerificationError
        The bytes written differ from the manifest's ``phase3.sha256`` (the file is removed):
        the software now writes these headers differently from when the release was frozen.
    """
    sha, size, _ = write_phase3(src, entry["phase3"], dst)
    if sha != entry["phase3"]["sha256"]:
        Path(dst).unlink()
        raise ReleaseVerificationError([
            f"{entry['path']}: the Phase 3 copy written now (sha256 {sha[:16]}..., {size} bytes) is not the one "
            f"frozen with the release ({entry['phase3']['sha256'][:16]}...); export it with the musewise "
            f"version that froze it"])


def plan_release(arch, products: list[dict], graphs: dict) -> None:
    """Add the ``phase3`` entry to the manifest entries of a release's science cubes and their images.

    Parameters
    ----------
    arch : Archive
    products : list of dict
        Manifest entries (``dataset_id``, ``category``, ``path``, ``record``...), changed in place.
    graphs : dict
        ``dataset_id -> ProvenanceGraph`` of each product.

    Notes
    -----
    A cube's white-light image is a :data:`WHITELIGHT_CATEGORIES` product of the
    release made by the run that made the cube, or a cube it was made from (the
    ``muse_scipost`` run of a ``DATACUBE_ZAP``).
    """
    cfg = ReleaseConfig(config=arch.config.config)
    images = {}
    for p in products:
        if p["category"] in WHITELIGHT_CATEGORIES:
            images.setdefault(p["record"]["run_id"], []).append(p)
    done = set()
    for p in products:
        if p["category"] not in CUBE_CATEGORIES:
            continue
        g = graphs[p["dataset_id"]]
        runs = {p["record"]["run_id"]} | {
            g.producer(d.id).id for d in g.ancestors() if d.visible and d.category in CUBE_CATEGORIES
            and g.producer(d.id) is not None}
        mine = [i for r in sorted(r for r in runs if r is not None) for i in images.get(r, [])]
        rec = arch.get(p["dataset_id"])
        p["phase3"] = cube_cards(arch, rec, g, [(exported_name(i), PRODCATG_WHITELIGHT) for i in mine], cfg)
        for i in mine:
            if i["dataset_id"] not in done:
                done.add(i["dataset_id"])
                i["phase3"] = whitelight_cards(arch, arch.get(i["dataset_id"]), p["phase3"])
    for p in products:
        if "phase3" in p:
            spec = p["phase3"]
            spec["sha256"], spec["size"], spec["datasums"] = write_phase3(arch.path(p["dataset_id"]), spec)


__all__ = ["CUBE_CATEGORIES", "EXPOSURE_FRAME_TYPES", "MANDATORY_CUBE", "PRODCATG_CUBE", "PRODCATG_WHITELIGHT",
           "SDP_VERSION", "SPECSYS_OF_RVCORR", "WHITELIGHT_CATEGORIES", "cube_cards", "export_phase3",
           "exported_checksum", "exported_name", "extension_cards", "plan_release", "whitelight_cards",
           "write_phase3"]

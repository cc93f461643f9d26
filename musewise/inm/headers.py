"""FITS headers of raw MUSE frames, and the little astronomy they need.

Keywords follow the ESO dictionary used by real MUSE raw data (``ESO DPR``,
``ESO INS``, ``ESO DET``, ``ESO TEL``, ``ESO OBS``, ``ESO TPL``). The pipeline
recognises a frame's role from ``ESO DPR CATG/TYPE/TECH`` and, for arcs, from
which ``ESO INS LAMPi`` is on; it converts ADU with ``ESO DET OUTi GAIN`` and
trims with ``ESO DET OUTi PRSC*/OVSC*``; it corrects atmospheric refraction and
extinction from the ``ESO TEL`` airmass, parallactic angle and ambient keywords.

Times are UTC. Sidereal time, airmass and parallactic angle are computed with
closed formulae (no IERS tables: nothing is downloaded, results are
deterministic to the bit).
"""

from __future__ import annotations

import functools
import math
import warnings
from datetime import datetime, timezone

from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from ..products.ifu import chan_extname
from ..vocabulary import FrameType
from .detector import OVERSCAN, PORTS, PRESCAN, QUAD_NX, QUAD_NY, TRIM_NX, TRIM_NY, readout
from .lamps import LAMP_NAMES

#: Paranal: latitude, longitude (degrees, east positive) and altitude (m).
PARANAL = (-24.6270, -70.4040, 2648.0)

#: ``ESO DPR`` (CATG, TYPE, TECH) of each raw frame type.
DPR = {
    FrameType.BIAS: ("CALIB", "BIAS", "IMAGE"),
    FrameType.DARK: ("CALIB", "DARK", "IMAGE"),
    FrameType.FLAT: ("CALIB", "FLAT,LAMP", "IFU"),
    FrameType.ARC: ("CALIB", "WAVE", "IFU"),
    FrameType.SKYFLAT: ("CALIB", "FLAT,SKY", "IFU"),
    FrameType.STD: ("CALIB", "STD", "IFU"),
    FrameType.OBJECT: ("SCIENCE", "OBJECT", "IFU"),
    FrameType.SKY: ("SCIENCE", "SKY", "IFU"),
    FrameType.ILLUM: ("CALIB", "FLAT,LAMP,ILLUM", "IFU"),
}

#: Template (``ESO TPL ID``) that takes each frame type.
TEMPLATES = {
    FrameType.BIAS: "MUSE_wfm_cal_bias", FrameType.DARK: "MUSE_wfm_cal_dark",
    FrameType.FLAT: "MUSE_wfm_cal_specflat", FrameType.ARC: "MUSE_wfm_cal_arc",
    FrameType.SKYFLAT: "MUSE_wfm_cal_skyflat", FrameType.STD: "MUSE_wfm_acq_std",
    FrameType.OBJECT: "MUSE_wfm-noao_obs_genericoffset",
    FrameType.SKY: "MUSE_wfm-noao_obs_genericoffset",
    FrameType.ILLUM: "MUSE_wfm_cal_illum",
}


def _quiet(fn):
    # Keys longer than 8 characters become HIERARCH cards, as intended: no warning.
    @functools.wraps(fn)
    def wrapper(*a, **k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)
            return fn(*a, **k)
    return wrapper


def mjd(t: datetime) -> float:
    """Modified Julian Date of a UTC datetime (days)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    epoch = datetime(1858, 11, 17, tzinfo=timezone.utc)
    return (t - epoch).total_seconds() / 86400.0


def local_sidereal_time(t: datetime, longitude: float = PARANAL[1]) -> float:
    """Local mean sidereal time (degrees) from the IAU 1982 GMST formula."""
    d = mjd(t) - 51544.5
    gmst = 280.46061837 + 360.98564736629 * d
    return (gmst + longitude) % 360.0


def pointing(ra: float, dec: float, t: datetime) -> dict[str, float]:
    """Altitude, airmass and parallactic angle of a target from Paranal.

    Parameters
    ----------
    ra, dec : float
        Target position (degrees).
    t : datetime
        UTC time.

    Returns
    -------
    dict
        ``alt`` (deg), ``az`` (deg), ``airmass`` (Young 1994), ``parang`` (deg),
        ``lst`` (s of sidereal time), ``ha`` (deg).
    """
    lat = math.radians(PARANAL[0])
    lst = local_sidereal_time(t)
    ha = math.radians((lst - ra + 180.0) % 360.0 - 180.0)
    d = math.radians(dec)
    sin_alt = math.sin(lat) * math.sin(d) + math.cos(lat) * math.cos(d) * math.cos(ha)
    alt = math.asin(max(-1.0, min(1.0, sin_alt)))
    cz = max(sin_alt, 0.05)
    airmass = (1.002432 * cz ** 2 + 0.148386 * cz + 0.0096467) / (
        cz ** 3 + 0.149864 * cz ** 2 + 0.0102963 * cz + 0.000303978)
    parang = math.degrees(math.atan2(math.sin(ha), math.tan(lat) * math.cos(d)
                                     - math.sin(d) * math.cos(ha)))
    az = math.degrees(math.atan2(math.sin(ha), math.cos(ha) * math.sin(lat)
                                 - math.tan(d) * math.cos(lat))) + 180.0
    return {"alt": math.degrees(alt), "az": az % 360.0, "airmass": airmass,
            "parang": parang, "lst": lst / 15.0 * 3600.0, "ha": math.degrees(ha)}


def arcfile_name(t: datetime) -> str:
    """ESO archive file name of an exposure started at ``t`` (UTC, ms precision)."""
    return f"MUSE.{t.strftime('%Y-%m-%dT%H:%M:%S')}.{t.microsecond // 1000:03d}.fits"


@_quiet
def primary_header(frame_type: FrameType, date_obs: datetime, exptime: float, *,
                   mode: str = "WFM-NOAO-N", lamps_on=(), target: str | None = None,
                   ra: float = 0.0, dec: float = 0.0, seeing: float = 0.8,
                   obs_id: int = 0, tpl_expno: int = 1, tpl_nexp: int = 1,
                   tpl_start: datetime | None = None, prog_id: str = "60.A-9100(K)",
                   exp_no: int = 1, extra: dict | None = None) -> fits.Header:
    """Primary header of a raw MUSE exposure.

    Parameters
    ----------
    frame_type : FrameType
        Sets ``ESO DPR CATG/TYPE/TECH`` and ``ESO TPL ID``.
    date_obs : datetime
        Start of the exposure (UTC).
    exptime : float
        Exposure time (s).
    mode : str
        ``ESO INS MODE`` (``WFM-NOAO-N`` or ``WFM-NOAO-E``).
    lamps_on : sequence of int
        Calibration-unit lamps switched on (numbers 1-6, see :mod:`.lamps`).
    target : str, optional
        ``OBJECT`` / ``ESO OBS TARG NAME``; default the DPR type.
    ra, dec : float
        Telescope pointing (degrees); also sets airmass and parallactic angle.
    seeing : float
        DIMM seeing (arcsec FWHM) written to ``ESO TEL AMBI FWHM START/END``.
    obs_id, tpl_expno, tpl_nexp, exp_no : int
        Observation block id, exposure number within its template, exposures in
        the template, running exposure number of the night.
    tpl_start : datetime, optional
        Template start (default ``date_obs``).
    prog_id : str
        ESO programme id.
    extra : dict, optional
        More keywords (override the defaults).
    """
    catg, dtype, tech = DPR[frame_type]
    t = date_obs if date_obs.tzinfo else date_obs.replace(tzinfo=timezone.utc)
    t_end = datetime.fromtimestamp(t.timestamp() + exptime, tz=timezone.utc)
    # An ILLUM is taken within its OB, with the telescope still on the target.
    on_sky = frame_type in (FrameType.SKYFLAT, FrameType.STD, FrameType.OBJECT, FrameType.SKY,
                            FrameType.ILLUM)
    p0, p1 = pointing(ra, dec, t), pointing(ra, dec, t_end)
    name = target or dtype
    h = fits.Header()
    h["SIMPLE"] = True
    h["BITPIX"] = 8
    h["NAXIS"] = 0
    h["EXTEND"] = True
    h["ORIGIN"] = ("ESO-PARANAL", "European Southern Observatory")
    h["DATE"] = (t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3], "Date the file was written")
    h["TELESCOP"] = "ESO-VLT-U4"
    h["INSTRUME"] = "MUSE"
    h["OBJECT"] = (name, "Original target")
    h["RA"] = (float(ra), "[deg] Telescope pointing")
    h["DEC"] = (float(dec), "[deg] Telescope pointing")
    h["EQUINOX"] = 2000.0
    h["RADESYS"] = "FK5"
    h["EXPTIME"] = (float(exptime), "[s] Integration time")
    h["MJD-OBS"] = (mjd(t), "[d] Start of observation")
    h["DATE-OBS"] = (t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3], "Observing date (UTC)")
    h["UTC"] = (t.hour * 3600.0 + t.minute * 60 + t.second, "[s] UTC at start")
    h["LST"] = (p0["lst"], "[s] Local sidereal time at start")
    h["PI-COI"] = "SIMULATED"
    h["OBSERVER"] = "musewise.inm"
    h["ARCFILE"] = arcfile_name(t)
    h["ORIGFILE"] = f"MUSE_{catg}_{dtype.replace(',', '_')}_{exp_no:04d}.fits"
    h["ESO OBS ID"] = obs_id
    h["ESO OBS NAME"] = f"{TEMPLATES[frame_type]}_{obs_id}"
    h["ESO OBS PROG ID"] = prog_id
    h["ESO OBS TARG NAME"] = name
    h["ESO OBS START"] = (tpl_start or t).strftime("%Y-%m-%dT%H:%M:%S")
    h["ESO TPL ID"] = TEMPLATES[frame_type]
    h["ESO TPL START"] = (tpl_start or t).strftime("%Y-%m-%dT%H:%M:%S")
    h["ESO TPL EXPNO"] = tpl_expno
    h["ESO TPL NEXP"] = tpl_nexp
    h["ESO DPR CATG"] = catg
    h["ESO DPR TYPE"] = dtype
    h["ESO DPR TECH"] = tech
    h["ESO DET BINX"] = 1
    h["ESO DET BINY"] = 1
    h["ESO DET DIT"] = (float(exptime), "[s] Integration time")
    h["ESO DET NDIT"] = 1
    h["ESO DET EXP NO"] = exp_no
    h["ESO DET READ CURID"] = 1
    h["ESO DET READ CURNAME"] = "SCI1.0"
    h["ESO DET CHIPS"] = 24
    h["ESO INS MODE"] = (mode, "Instrument mode")
    h["ESO INS DROT MODE"] = "SKY"
    h["ESO INS DROT POSANG"] = (0.0, "[deg] Position angle on the sky")
    h["ESO INS LAMPNUM"] = len(LAMP_NAMES)
    for n, lamp in LAMP_NAMES.items():
        h[f"ESO INS LAMP{n} NAME"] = lamp
        h[f"ESO INS LAMP{n} ST"] = n in lamps_on
    for n in LAMP_NAMES:
        h[f"ESO INS SHUT{n} NAME"] = f"CU-SHUT{n}"
        h[f"ESO INS SHUT{n} ST"] = n in lamps_on
    h["ESO INS TEMP1 VAL"] = (9.5, "[C] Spectrograph temperature")
    h["ESO TEL GEOLAT"] = PARANAL[0]
    h["ESO TEL GEOLON"] = PARANAL[1]
    h["ESO TEL GEOELEV"] = PARANAL[2]
    h["ESO TEL TARG ALPHA"] = float(ra)
    h["ESO TEL TARG DELTA"] = float(dec)
    # Calibrations are taken with the telescope parked at zenith.
    h["ESO TEL ALT"] = p0["alt"] if on_sky else 90.0
    h["ESO TEL AZ"] = p0["az"] if on_sky else 0.0
    h["ESO TEL AIRM START"] = round(p0["airmass"], 4) if on_sky else 1.0
    h["ESO TEL AIRM END"] = round(p1["airmass"], 4) if on_sky else 1.0
    h["ESO TEL PARANG START"] = round(p0["parang"], 3) if on_sky else 0.0
    h["ESO TEL PARANG END"] = round(p1["parang"], 3) if on_sky else 0.0
    h["ESO TEL AMBI FWHM START"] = (float(seeing), "[arcsec] DIMM seeing")
    h["ESO TEL AMBI FWHM END"] = (float(seeing), "[arcsec] DIMM seeing")
    h["ESO TEL IA FWHM"] = (float(seeing), "[arcsec] Image quality at the telescope")
    h["ESO TEL AMBI TEMP"] = (12.0, "[C] Ambient temperature")
    h["ESO TEL AMBI RHUM"] = (12.0, "[%] Relative humidity")
    h["ESO TEL AMBI PRES START"] = (744.0, "[hPa] Ambient pressure")
    h["ESO TEL AMBI PRES END"] = (744.0, "[hPa] Ambient pressure")
    h["ESO TEL MOON RA"] = 0.0
    h["ESO TEL MOON DEC"] = 0.0
    if extra:
        for k, v in extra.items():
            h[k] = v
    return h


@_quiet
def extension_header(ifu: int) -> fits.Header:
    """Detector keywords of the ``CHANnn`` image extension of one IFU.

    The image-structure keywords (``XTENSION``, ``BITPIX = 16``, ``NAXIS*``,
    ``BZERO = 32768``) are included: the frame writer streams the header and the
    pixel bytes itself.
    """
    from .detector import RAW_NX, RAW_NY

    h = fits.Header()
    h["XTENSION"] = "IMAGE"
    h["BITPIX"] = 16
    h["NAXIS"] = 2
    h["NAXIS1"] = RAW_NX
    h["NAXIS2"] = RAW_NY
    h["PCOUNT"] = 0
    h["GCOUNT"] = 1
    h["BZERO"] = 32768
    h["BSCALE"] = 1
    h["EXTNAME"] = (chan_extname(ifu), "Extension name: IFU / detector channel")
    h["ESO DET CHIP NAME"] = f"SIM{ifu:02d}"
    h["ESO DET CHIP ID"] = f"SIMCCD-{ifu:02d}"
    h["ESO DET CHIP INDEX"] = ifu
    h["ESO DET CHIP DATE"] = "2014-01-01"
    h["ESO DET CHIP LIVE"] = True
    h["ESO DET CHIP NX"] = TRIM_NX
    h["ESO DET CHIP NY"] = TRIM_NY
    h["ESO DET OUTPUTS"] = 4
    for q in (1, 2, 3, 4):
        p = readout(ifu, q)
        pre = f"ESO DET OUT{q} "
        h[pre + "ID"] = "EFGH"[q - 1]
        h[pre + "NAME"] = "EFGH"[q - 1]
        h[pre + "X"] = PORTS[q][0]
        h[pre + "Y"] = PORTS[q][1]
        h[pre + "NX"] = QUAD_NX
        h[pre + "NY"] = QUAD_NY
        h[pre + "PRSCX"] = PRESCAN
        h[pre + "PRSCY"] = PRESCAN
        h[pre + "OVSCX"] = OVERSCAN
        h[pre + "OVSCY"] = OVERSCAN
        h[pre + "GAIN"] = (p.gain, "[e-/ADU] Conversion gain")
        h[pre + "RON"] = (p.ron, "[e-] Read-out noise")
    return h

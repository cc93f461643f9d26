"""The reduction cascade: which recipe makes what from which inputs.

A :class:`Step` names one stage of the MUSE reduction in the astronomer's
words (``bias``, ``flat``, ``scipost``...), the pipeline recipe that does it,
the frames it reduces, the calibrations it needs and the products it makes.
The planner walks these steps backwards from a target; :func:`musewise.dpu.run`
uses them to select inputs from the archive.

The chain for a science cube is::

    bias -> [dark] -> flat -> wavecal -> lsf -> twilight -> scibasic -> scipost -> exp_align -> exp_combine
                                                  scibasic_std -> standard -^        +-> combine_cubes
                                                        field_grid (a target's) -^

(brackets: optional, switched on in :class:`~musewise.dpu.config.DpuConfig`; ``zap``, the
ZAP sky-residual cleaner, and ``sources``, the source catalogue of a cube, run when asked for:
``dpu.make('zap')``, on each exposure's cube of a night or on a target's combined cube,
:attr:`Step.target_inputs`). ``lsf`` is
always built: muse_scipost's default sky subtraction (``skymethod=model``) fits the
sky lines with the LSF of every slice (``LSF_PROFILE``), starting from the static
``SKY_LINES`` list. ``twilight`` is built when the night has (3+) twilight sky flats:
muse_scibasic then corrects the lamp flat's illumination with its TWILIGHT_CUBE.
``scibasic_std`` and ``standard`` are built when the night has a
standard star (STD frame): scipost then calibrates fluxes with the night's own
STD_RESPONSE and STD_TELLURIC; without one (or when muse_standard fails) it uses the
certified response nearest in time, at worst the static table, and its run says so.

A field's exposures are resampled onto one grid, its ``OUTPUT_WCS``: when a field is reduced
as a target (``make(..., target='<OBJECT>')``), ``field_grid`` (:mod:`musewise.recipes.fieldgrid`)
makes it from the pointings of every raw science frame of the field, before scipost. A night
reduced on its own uses the field's grid when one is certified, else each cube fits its data.

A field's exposures are combined in one of two ways. ``exp_align`` (muse_exp_align)
measures the offsets between the exposures' white-light images (IMAGE_FOV) and writes
an OFFSET_LIST; ``exp_combine`` (muse_exp_combine) resamples the reduced pixel tables
(PIXTABLE_REDUCED) of every exposure, shifted by those offsets, into one cube, on an
OUTPUT_WCS when one is certified. A field with more exposures than memory allows
muse_exp_combine instead has every exposure resampled by scipost onto one common
OUTPUT_WCS and ``combine_cubes`` (:mod:`musewise.recipes.cubecombine`) combines those
cubes a block of wavelength planes at a time, sigma-clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import NotFoundError

#: An attached frame (ILLUM) of no OB of the frames is taken only this close in time (days: 1 h,
#: about an OB's length; the slices' illumination drifts with the temperature over the night).
ATTACHED_WINDOW_DAYS = 1.0 / 24.0

#: Calibrations that belong to one field (``OBJECT``): the offsets between its exposures and the
#: grid they are combined on. They are chosen only for that field, whatever the time range they
#: are certified for (two fields observed in one night never share them).
FIELD_CATEGORIES = frozenset({"OFFSET_LIST", "OUTPUT_WCS"})

#: The recipes that combine a field's exposures into its cube, the preferred first: mpdaf-style
#: combine_cubes (exposures on one grid, sigma-clipped), else muse_exp_combine.
FIELD_CUBE_RECIPES = ("combine_cubes", "muse_exp_combine")

#: How a step is split into runs.
PER_IFU = "ifu"            #: one run per IFU (``--nifu=N``), all matching raw frames of the night
PER_EXPOSURE = "exposure"  #: one run per exposure, with the products of every IFU (scipost)
PER_NIGHT = "night"        #: one run for the whole night, every IFU and exposure (exp_combine)
#: One run for every exposure of a target (``OBJECT``) over all the nights it was observed.
#: A step reducing products with ``per=PER_NIGHT`` (exp_combine) is split this way when it
#: is planned or run for a target (:func:`split_of`); a step may also say so itself.
PER_TARGET = "target"


@dataclass(frozen=True)
class Step:
    """One stage of the reduction.

    Parameters
    ----------
    name : str
        Short name users type (``bias``, ``scipost``).
    recipe : str
        Registered recipe name (``muse_bias``).
    input_tag : str
        SOF tag of the frames being reduced: a raw frame type (``BIAS``) or,
        for steps reducing products, a product category (``PIXTABLE_OBJECT``).
    input_kind : str
        ``"raw"`` when ``input_tag`` is a raw frame type, ``"product"`` otherwise.
    calibrations : tuple of str
        Calibration categories (``ESO PRO CATG``) that must be found.
    optional : tuple of str
        Calibration categories used when one is found.
    products : tuple of str
        Categories the step makes; the first is its main product.
    per : str
        :data:`PER_IFU`, :data:`PER_EXPOSURE`, :data:`PER_NIGHT` or :data:`PER_TARGET`.
    min_inputs : int
        Fewest frames of ``input_tag`` the recipe accepts.
    skip_without_input : bool
        A night without raw frames of ``input_tag`` skips the step instead of failing:
        what it makes can come from elsewhere (a night without a standard star uses
        another night's response, or the static one).
    fallback : str
        When set, a failed run of the step does not stop the cascade: the steps after it
        use this instead (said in their runs' calibration choices).
    required_when : tuple of (str, tuple of str, tuple of str)
        ``(parameter, values, categories)``: optional calibrations that become required
        when the recipe's effective ``parameter`` is one of ``values`` (muse_scipost
        needs SKY_LINES and LSF_PROFILE for ``skymethod=model``).
    input_recipes : tuple of str
        For steps reducing products: only products made by these recipes are inputs, those
        of the first that made any (``exp_combine`` combines scipost's cubes, never an earlier
        combined cube of the same category: a combined cube carries the MJD-OBS of its first
        exposure, so it would stand in for that exposure). Empty: any.
    target_inputs : tuple of str
        Recipes whose product the step reads when reduced for a target (an ``OBJECT``): then
        one run (:data:`PER_TARGET`) on the target's newest product made by the first of them
        that made one. ``sources`` and ``zap`` catalogue and clean the field's combined cube
        (combine_cubes', else muse_exp_combine's); reduced for a night, each exposure's cube.
        Empty: a target is reduced as its nights are.
    attached : tuple of str
        Raw frame types taken with the science OB that the recipe takes one of, when the
        night has one (muse_scibasic's ``ILLUM``): the one of the frames' OB (``ESO OBS
        ID``), else the closest in time within :data:`ATTACHED_WINDOW_DAYS`
        (:func:`~musewise.dpu.selection.attached_frame`).
    per_frame : bool
        The recipe reduces each input frame on its own (muse_scibasic): one run makes a
        product of each category per frame.
    """

    name: str
    recipe: str
    input_tag: str
    input_kind: str = "raw"
    calibrations: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    per: str = PER_IFU
    min_inputs: int = 1
    skip_without_input: bool = False
    fallback: str = ""
    required_when: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()
    input_recipes: tuple[str, ...] = ()
    target_inputs: tuple[str, ...] = ()
    attached: tuple[str, ...] = ()
    per_frame: bool = False

    def required_for(self, params: dict) -> tuple[str, ...]:
        """Calibration categories required with the effective recipe parameters ``params``."""
        extra = [c for name, values, cats in self.required_when if params.get(name) in values
                 for c in cats]
        return self.calibrations + tuple(c for c in dict.fromkeys(extra) if c not in self.calibrations)

    def input_recipes_for(self, target: str | None = None) -> tuple[str, ...]:
        """The recipes whose products are inputs, in order of preference, reduced for ``target`` or a night."""
        return self.target_inputs if target and self.target_inputs else self.input_recipes

    @property
    def main_product(self) -> str:
        return self.products[0]

    @property
    def combines_ifus(self) -> bool:
        """True when one run takes the products of several IFUs."""
        return self.per != PER_IFU


#: The steps musewise knows, in dependency order.
STEPS: dict[str, Step] = {s.name: s for s in (
    Step("bias", "muse_bias", "BIAS", products=("MASTER_BIAS",), min_inputs=3),
    Step("dark", "muse_dark", "DARK", calibrations=("MASTER_BIAS",), products=("MASTER_DARK",)),
    Step("flat", "muse_flat", "FLAT", calibrations=("MASTER_BIAS",), optional=("MASTER_DARK",),
         products=("MASTER_FLAT", "TRACE_TABLE")),
    Step("wavecal", "muse_wavecal", "ARC",
         calibrations=("MASTER_BIAS", "MASTER_FLAT", "TRACE_TABLE", "LINE_CATALOG"),
         optional=("MASTER_DARK",), products=("WAVECAL_TABLE", "WAVECAL_RESIDUALS")),
    Step("lsf", "muse_lsf", "ARC",
         calibrations=("MASTER_BIAS", "TRACE_TABLE", "WAVECAL_TABLE", "LINE_CATALOG"),
         products=("LSF_PROFILE",)),
    Step("twilight", "muse_twilight", "SKYFLAT",
         calibrations=("MASTER_BIAS", "MASTER_FLAT", "TRACE_TABLE", "WAVECAL_TABLE", "GEOMETRY_TABLE"),
         optional=("MASTER_DARK",), products=("TWILIGHT_CUBE",), per=PER_NIGHT, min_inputs=3,
         skip_without_input=True),
    Step("scibasic", "muse_scibasic", "OBJECT",
         calibrations=("MASTER_BIAS", "MASTER_FLAT", "TRACE_TABLE", "WAVECAL_TABLE", "GEOMETRY_TABLE"),
         optional=("MASTER_DARK", "TWILIGHT_CUBE"), products=("PIXTABLE_OBJECT",), attached=("ILLUM",),
         per_frame=True),
    Step("scibasic_std", "muse_scibasic", "STD",
         calibrations=("MASTER_BIAS", "MASTER_FLAT", "TRACE_TABLE", "WAVECAL_TABLE", "GEOMETRY_TABLE"),
         optional=("MASTER_DARK", "TWILIGHT_CUBE"), products=("PIXTABLE_STD",), skip_without_input=True,
         attached=("ILLUM",), per_frame=True),
    Step("standard", "muse_standard", "PIXTABLE_STD", input_kind="product",
         calibrations=("EXTINCT_TABLE", "STD_FLUX_TABLE"), optional=("FILTER_LIST",),
         products=("STD_RESPONSE", "STD_TELLURIC"), per=PER_EXPOSURE, skip_without_input=True,
         fallback="the STD_RESPONSE certified nearest in time (the static table, without a standard)"),
    # Not a pipeline recipe: the grid of a field (musewise.recipes.fieldgrid), from the pointings of
    # all its raw science frames, which every exposure's cube is resampled onto.
    Step("field_grid", "field_grid", "OBJECT", calibrations=("GEOMETRY_TABLE",), products=("OUTPUT_WCS",),
         per=PER_TARGET),
    Step("scipost", "muse_scipost", "PIXTABLE_OBJECT", input_kind="product",
         calibrations=("EXTINCT_TABLE", "STD_RESPONSE"),
         optional=("STD_TELLURIC", "FILTER_LIST", "LSF_PROFILE", "SKY_LINES", "ASTROMETRY_WCS", "OUTPUT_WCS"),
         products=("DATACUBE_FINAL", "IMAGE_FOV", "PIXTABLE_REDUCED"), per=PER_EXPOSURE,
         required_when=(("skymethod", ("model", "subtract-model"), ("SKY_LINES", "LSF_PROFILE")),)),
    # per= stays a field: planning across the nights of a target may switch these to per target.
    Step("exp_align", "muse_exp_align", "IMAGE_FOV", input_kind="product",
         products=("OFFSET_LIST", "SOURCE_LIST", "PREVIEW_FOV"), per=PER_NIGHT, min_inputs=2,
         input_recipes=("muse_scipost",)),
    Step("exp_combine", "muse_exp_combine", "PIXTABLE_REDUCED", input_kind="product",
         calibrations=("OFFSET_LIST",), optional=("FILTER_LIST", "OUTPUT_WCS"),
         products=("DATACUBE_FINAL", "IMAGE_FOV"), per=PER_NIGHT, min_inputs=2,
         input_recipes=("muse_scipost",)),
    Step("combine_cubes", "combine_cubes", "DATACUBE_FINAL", input_kind="product",
         products=("DATACUBE_FINAL",), per=PER_NIGHT, min_inputs=2,
         input_recipes=("muse_scipost",)),
    # Not a pipeline recipe: ZAP (musewise.recipes.zapclean) cleans a cube of its sky-line residuals
    # (each exposure's of a night; a target's combined cube); its product is a cube of its own category.
    Step("zap", "zap", "DATACUBE_FINAL", input_kind="product", products=("DATACUBE_ZAP",),
         per=PER_EXPOSURE, input_recipes=("muse_scipost",), target_inputs=FIELD_CUBE_RECIPES),
    # Not a pipeline recipe: MUSELET and photutils (musewise.recipes.sources) catalogue the emission-line
    # and continuum sources of a cube (each exposure's of a night; a target's combined cube).
    Step("sources", "muselet", "DATACUBE_FINAL", input_kind="product", products=("SOURCE_CATALOG",),
         per=PER_EXPOSURE, input_recipes=("muse_scipost",), target_inputs=FIELD_CUBE_RECIPES),
)}

#: Categories a step's runs archive besides its :attr:`Step.products`, with musewise's default
#: parameters (:data:`musewise.dpu.config.DEFAULT_PARAMETERS`), as the real pipeline (MUSE DRS
#: 2.8) archived them in a whole simulated cascade (``tests/test_qc_cover.py`` checks it on the
#: ``field``): the resampled sky flats, the pre-reduced CCD images, the standard's cube and
#: spectrum, scipost's sky model (``--save skymodel``) and exp_align's exposure map.
SAVED_BESIDES: dict[str, tuple[str, ...]] = {
    "twilight": ("DATACUBE_SKYFLAT",),
    "scibasic": ("OBJECT_RED",),
    "scibasic_std": ("STD_RED",),
    "standard": ("DATACUBE_STD", "STD_FLUXES"),
    "scipost": ("SKY_SPECTRUM", "SKY_LINES", "SKY_CONTINUUM", "SKY_MASK", "SKY_IMAGE"),
}

#: Which step makes each product category (static calibrations have none: they are ingested).
PRODUCER: dict[str, str] = {}
for _s in STEPS.values():
    for _c in _s.products:
        PRODUCER.setdefault(_c, _s.name)
del _s, _c


def split_of(step: Step, target: str | None = None) -> str:
    """How ``step`` is split into runs when reduced for ``target`` (an ``OBJECT``; None: one night).

    For a target, a step reducing products once per night (exp_combine) takes the
    products of every night of the target: :data:`PER_TARGET`; so does a step with
    :attr:`Step.target_inputs` (one run on the field's combined cube). A raw-frame step stays
    as it is (twilight flats are combined per night). Without a target a
    :data:`PER_TARGET` step takes the target's exposures of the one night: :data:`PER_NIGHT`.
    """
    if target and step.input_kind == "product" and (step.per == PER_NIGHT or step.target_inputs):
        return PER_TARGET
    if not target and step.per == PER_TARGET:
        return PER_NIGHT
    return step.per


def input_step(step: Step, target: str | None = None) -> str | None:
    """The name of the step whose products ``step`` reduces, for ``target`` or a night (None: raw frames).

    That of the first of its preferred recipes (:meth:`Step.input_recipes_for`) making its
    input category, else the category's producer (:data:`PRODUCER`).
    """
    if step.input_kind != "product":
        return None
    for recipe in step.input_recipes_for(target)[:1]:
        for s in STEPS.values():
            if s.recipe == recipe and step.input_tag in s.products:
                return s.name
    return PRODUCER.get(step.input_tag)


def get_step(name: str) -> Step:
    """The step called ``name``; a recipe name (``muse_bias``) or a Python recipe also works.

    A registered recipe that is not one of :data:`STEPS` (a plain-Python recipe)
    becomes a step reducing its first raw input tag: one run per IFU for raw
    frames, one run per exposure for products (e.g. a cube).

    Raises
    ------
    NotFoundError
        ``No reduction step named 'x'; known: ...``.
    """
    if name in STEPS:
        return STEPS[name]
    for s in STEPS.values():
        if s.recipe == name:
            return s
    from ..recipes import get_recipe, recipes

    if name in recipes:
        rec = get_recipe(name)
        raw = rec.raw_tags
        if raw:
            kind = "raw" if raw[0] in ("BIAS", "DARK", "FLAT", "ARC", "SKYFLAT", "STD", "OBJECT", "SKY") else "product"
            return Step(rec.name, rec.name, raw[0], input_kind=kind,
                        calibrations=tuple(t.tag for t in rec.input_tags if t.is_calibration and t.required),
                        optional=tuple(t.tag for t in rec.input_tags if t.is_calibration and not t.required),
                        products=tuple(rec.output_tags) or ("UNKNOWN",),
                        per=PER_IFU if kind == "raw" else PER_EXPOSURE)
    raise NotFoundError(f"No reduction step named {name!r}; known: {', '.join(STEPS)}")


__all__ = ["ATTACHED_WINDOW_DAYS", "FIELD_CATEGORIES", "FIELD_CUBE_RECIPES", "input_step", "PER_EXPOSURE", "PER_IFU", "PER_NIGHT", "PER_TARGET", "PRODUCER", "SAVED_BESIDES", "STEPS", "Step", "get_step",
           "split_of"]

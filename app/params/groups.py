"""Parameter groups: the pieces every request model is made of, each parsed once into typed,
bounded values.

A group is a small pydantic model (TiTiler's ``dependencies.py`` is the model): its validators read
what the client sent (a query string or a form; see :mod:`app.params.values`) and store the typed
value, so a route, a planner and the page never parse a parameter again. The field types keep the
wire form in the OpenAPI document (a sector list is documented as strings, an ephemeris as a JSON
string) while the model holds ints, floats, tuples and dicts. Bounds that do not depend on the
server's settings are checked here, at parse time; the settings' limits (``max_cutout_side``...)
are checked by the planners before anything is read or allocated.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
)

from app.params import values
from core.cubes.frames import TimeWindow
from core.cutout_size import PIXEL_UNITS, CutoutSize
from core.errors import InvalidInputError
from core.images.render import STRETCHES
from core.product import Product

__all__ = [
    "ABSOLUTE_MAX_PIXELS",
    "MAX_ANGULAR_SIDE_DEG",
    "ApertureGroup",
    "Dec",
    "EphemerisGroup",
    "ImagesGroup",
    "PositionGroup",
    "ProductField",
    "ProductGroup",
    "Ra",
    "RadiusGroup",
    "RenderGroup",
    "SectorsGroup",
    "SizeGroup",
    "Stretch",
    "TimeWindowGroup",
]

#: no pixel count a request names may exceed this, whatever the settings (they are lower)
ABSOLUTE_MAX_PIXELS = 100_000
#: no angular cutout side may exceed this
MAX_ANGULAR_SIDE_DEG = 180.0
#: longest image name or URI accepted
_MAX_NAME_CHARS = 1024


class Group(BaseModel):
    """The base of every parameter group and request model: unknown parameters are ignored (as
    TESScut ignores them), names match the API's.

    Validators are looked up by name through the class hierarchy, so one group's validator would
    silently replace another's of the same name in a model combining both (its bounds would be
    gone): a model whose groups define one validator name twice is refused when it is defined.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        defined: dict[str, str] = {}
        for base in cls.__mro__:
            decorators = base.__dict__.get("__pydantic_decorators__")
            for kind in ("field_validators", "model_validators", "validators", "root_validators"):
                for name, info in getattr(decorators, kind, {}).items():
                    func = getattr(info.func, "__func__", info.func)
                    owner = f"{func.__module__}.{func.__qualname__.rsplit('.', 1)[0]}"
                    if defined.setdefault(name, owner) != owner:
                        raise TypeError(f"{cls.__name__}: validator {name!r} is defined by both {defined[name]} and "
                                        f"{owner}; one would replace the other (give each its own name)")


# -- field types ----------------------------------------------------------------------------------

Ra = Annotated[
    float,
    Field(ge=-180, le=360, allow_inf_nan=False, examples=[217.42893801],
          description="Right ascension, degrees (ICRS), in [-180, 360]; wrapped into [0, 360)."),
]
Dec = Annotated[
    float,
    Field(ge=-90, le=90, allow_inf_nan=False, examples=[-62.67949189], description="Declination, degrees (ICRS)."),
]


def _product(value: Any) -> Product:
    try:
        return Product.parse(value, empty_is_default=True)
    except InvalidInputError as exc:
        raise ValueError(exc.message) from None


ProductField = Annotated[
    Product,
    BeforeValidator(_product),
    WithJsonSchema({"type": "string", "enum": [*Product.names(), ""], "default": Product.default().value,
                    "description": f"Cube product: {' or '.join(Product.names())}, case-insensitive; empty means "
                                   f"{Product.default().value} (as an HTML form sends an unset field)."}),
]

#: an image stretch, one of the engine's (:data:`core.images.render.STRETCHES`)
Stretch = Literal[tuple(STRETCHES)]  # type: ignore[valid-type]


def _lower(value: Any) -> Any:
    return value.strip().lower().lstrip(".") if isinstance(value, str) else value


def _pair(name: str) -> Any:
    return BeforeValidator(lambda v: values.parse_pair(v, name))


def _boolean(value: Any) -> Any:
    # true or false in any case (what astroquery sends: Python's True/False), an empty value being
    # false; not 0/1/yes/no, which the schema's boolean does not allow
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "false", ""):
            return text == "true"
        raise ValueError("must be true or false")
    return value


Flag = Annotated[bool, BeforeValidator(_boolean)]


# -- groups ---------------------------------------------------------------------------------------


class PositionGroup(Group):
    """``ra``, ``dec``: a position in ICRS degrees (RA wrapped into [0, 360) by :attr:`ra360`)."""

    ra: Ra
    dec: Dec

    @property
    def ra360(self) -> float:
        return self.ra % 360.0


class ProductGroup(Group):
    """``product``: SPOC or TICA, case-insensitive, empty meaning SPOC."""

    product: ProductField = Product.default()


class SizeGroup(Group):
    """``x``, ``y``, ``units``: a cutout size as TESScut takes it, held as one
    :class:`core.cutout_size.CutoutSize` (:attr:`size`).

    A side is at most :data:`ABSOLUTE_MAX_PIXELS` pixels or :data:`MAX_ANGULAR_SIDE_DEG` degrees
    here; the server's ``max_cutout_side`` is checked against the window as cut."""

    units: str = Field("px", description="Unit of x and y: px, d (deg), m (arcmin) or s (arcsec).")
    x: float = Field(5, gt=0, allow_inf_nan=False, description="Cutout width, in `units`.")
    y: float | None = Field(None, gt=0, allow_inf_nan=False, description="Cutout height, in `units` (default: x).")
    _size: CutoutSize = PrivateAttr()

    @field_validator("units", mode="before")
    @classmethod
    def _check_units(cls, value: Any) -> str:
        return values.size_unit(value)

    @field_validator("x", "y", mode="before")
    @classmethod
    def _size_not_boolean(cls, value: Any) -> Any:
        return values.not_boolean(value)

    @field_validator("x", "y")
    @classmethod
    def _size_bounded(cls, value: float | None, info: Any) -> float | None:
        if value is None:
            return value
        units = info.data.get("units", "px")
        if units in PIXEL_UNITS:
            if value > ABSOLUTE_MAX_PIXELS:
                raise ValueError(f"at most {ABSOLUTE_MAX_PIXELS} pixels")
            if round(value) < 1:
                raise ValueError(f"a size of {value:g} pixels rounds to 0 pixels")
        else:
            degrees = CutoutSize.from_numbers(value, None, units).x
            if degrees > MAX_ANGULAR_SIDE_DEG:
                raise ValueError(f"at most {MAX_ANGULAR_SIDE_DEG:g} degrees")
        return value

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self._size = CutoutSize.from_numbers(self.x, self.y, self.units)

    @property
    def size(self) -> CutoutSize:
        """The size as the engine takes it."""
        return self._size

    @property
    def size_label(self) -> str:
        """``<x>x<y>`` as the request gave them (for file names)."""
        y = self.y if self.y is not None else self.x
        return f"{self.x:g}x{y:g}"


class SectorsGroup(Group):
    """``sector``: sectors to cut, repeated (``sector=28&sector=68``), a literal list (``[28, 68]``,
    what astroquery's GET sends) or comma-separated (``28,68``); empty means every hosted sector."""

    sector: Annotated[
        tuple[int, ...],
        BeforeValidator(values.parse_sectors),
        WithJsonSchema({"type": "array", "items": {"type": "string"}, "examples": [["38"]],
                        "description": "Sectors to cut (default: all hosted sectors that contain the position); "
                                       "repeat the parameter, or give `28,68` or `[28, 68]`; at most "
                                       f"{values.MAX_SECTORS}."}),
    ] = ()

    @property
    def sectors(self) -> tuple[int, ...]:
        return self.sector


class RadiusGroup(Group):
    """``radius``: a search radius with an optional unit suffix, held in degrees."""

    radius: Annotated[
        float,
        BeforeValidator(values.parse_angle),
        WithJsonSchema({"type": "string", "default": "0", "examples": ["5m"],
                        "description": "Search radius: a number with unit suffix d (default), m, s or px "
                                       f"(21 arcsec), at most {values.MAX_RADIUS_DEG:g} degrees."}),
    ] = 0.0

    @property
    def radius_deg(self) -> float:
        return self.radius


class RenderGroup(Group):
    """How an image is rendered: ``stretch``, ``minmax_percent``, ``minmax_value``, ``invert``."""

    stretch: Annotated[Stretch, BeforeValidator(_lower)] = Field("asinh", description="Image stretch.")
    minmax_percent: Annotated[
        tuple[float, float] | None,
        _pair("minmax_percent"),
        WithJsonSchema({"type": "string", "description": "Interval as two percentiles, e.g. `0.5,99.5`."}),
    ] = None
    minmax_value: Annotated[
        tuple[float, float] | None,
        _pair("minmax_value"),
        WithJsonSchema({"type": "string", "description": "Interval as two values, e.g. `0,1000`."}),
    ] = None
    invert: Flag = Field(False, description="Invert the image.")

    def render_options(self) -> dict[str, Any]:
        """The engine's ``img_cut``/``normalize_img`` keyword arguments."""
        return {"stretch": self.stretch, "minmax_percent": self.minmax_percent, "minmax_value": self.minmax_value,
                "invert": self.invert}


class ApertureGroup(Group):
    """``aperture`` (the side of a square) or ``mask`` (rows of 0/1): the pixels a light curve sums."""

    aperture: int = Field(3, ge=1, le=ABSOLUTE_MAX_PIXELS,
                          description="Side, in pixels, of the square of pixels summed, centred on the position as "
                                      "a cutout of that size is (`astrocut` with `x=y=aperture` cuts exactly these "
                                      "pixels).")
    mask: Annotated[
        str | None,
        BeforeValidator(lambda v: values.check_mask(v, max_side=ABSOLUTE_MAX_PIXELS)),
        WithJsonSchema({"type": "string", "pattern": r"^([01]+(,[01]+)*)?$",
                        "description": "Instead of `aperture`: the pixels summed, as rows of 0/1 separated by commas "
                                       "(`010,111,010`), in array order (the first row is the lowest cube row, the "
                                       "bottom of a north-up image; as lightkurve's `aperture_mask`), placed as a "
                                       "cutout of the mask's shape is. At most `max_cutout_side` rows and columns "
                                       "(413 beyond); a big mask does not fit in a URL: POST it. Empty means none."}),
    ] = None

    @property
    def aperture_shape(self) -> tuple[int, int]:
        """(nx, ny) of the pixels summed: the mask's box, else the square."""
        if self.mask is None:
            return self.aperture, self.aperture
        first = self.mask.find(",")
        return (len(self.mask) if first < 0 else first), self.mask.count(",") + 1


#: a path across the demo sector 38 (camera 2, CCD 2) during its frames: the documents' example
EXAMPLE_EPHEMERIS = '{"time": [2333.25, 2333.32], "ra": [217.41, 217.45], "dec": [-62.68, -62.678]}'


class EphemerisGroup(Group):
    """A moving target: ``obj_id`` (needs a resolver) or an explicit ``ephemeris`` path."""

    obj_id: str | None = Field(None, description="Object name or designation, sent to the ephemeris resolver.")
    obj_type: str | None = Field(None, max_length=100,
                                 description="Passed verbatim to the resolver (majorbody, smallbody...).")
    ephemeris: Annotated[
        dict[str, list[Any]] | None,
        BeforeValidator(values.parse_ephemeris),
        WithJsonSchema({"type": "string", "examples": [EXAMPLE_EPHEMERIS],
                        "description": 'An explicit path as JSON: {"time": [...TJD or ISO...], "ra": [...deg...], '
                                       f'"dec": [...deg...]}}, at most {values.MAX_EPHEMERIS_CHARS} characters.'}),
    ] = None

    @field_validator("obj_id")
    @classmethod
    def _check_obj_id(cls, value: str | None) -> str | None:
        # Bounded and printable; it reaches file names only through the safe alphabet, and the
        # OBJECT card with its accents dropped (app.planning.moving.object_card).
        if value is not None and (len(value) > 100 or not value.isprintable()):
            raise ValueError("an object name of at most 100 printable characters")
        return value or None

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        if not self.obj_id and self.ephemeris is None:
            raise InvalidInputError("give obj_id (needs an ephemeris resolver) or an explicit ephemeris",
                                    field="obj_id")


class ImagesGroup(Group):
    """``images``: input images, paths relative to an image root or ``s3://`` URIs (repeated)."""

    images: list[str] = Field(
        default_factory=list,
        description="Input images: paths relative to an image root, or s3:// URIs (repeat the parameter); at most "
                    f"{values.MAX_LIST_ITEMS} names of at most {_MAX_NAME_CHARS} characters.",
        examples=[["img1.fits"]],
    )

    @field_validator("images")
    @classmethod
    def _images_bounded(cls, value: list[str]) -> list[str]:
        # checked here rather than advertised as schema bounds: a client building the longest list
        # the schema allowed would send a URL no server takes
        if len(value) > values.MAX_LIST_ITEMS:
            raise ValueError(f"at most {values.MAX_LIST_ITEMS} images")
        if any(len(name) > _MAX_NAME_CHARS for name in value):
            raise ValueError(f"an image name of at most {_MAX_NAME_CHARS} characters")
        return value

    @property
    def image_names(self) -> list[str]:
        """The names given, empty ones left out."""
        return [i for i in self.images if i and i.strip()]



#: the most frames a cadence may bin (more than any cube holds; a cube's own count is checked later)
MAX_FRAME_BIN = 10_000_000
# "" (an unset form field) is read as the default, so the schema says it is allowed (as `product`'s does)
_EMPTY_OR_NUMBER = WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "enum": [""]}, {"type": "null"}]})
_EMPTY_OR_COUNT = WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_FRAME_BIN},
                                            {"type": "string", "enum": [""]}]})


def _empty_is(default: Any) -> Any:
    return BeforeValidator(lambda v: default if isinstance(v, str) and not v.strip() else v)


class TimeWindowGroup(Group):
    """``time_min``, ``time_max`` and ``frame_bin``: which frames a cut keeps, held as one
    :class:`core.cubes.frames.TimeWindow` (:attr:`time_window`). An extension over TESScut and
    astrocut: left out (or empty), the answer is the one without them, byte for byte.

    A bad value is a 400 naming its field; ``time_max`` before ``time_min`` names ``time_max``. A
    window on no frame of a cube, and ``frame_bin`` above the window's frames, are decided per cube
    by the engine (its errors name the same fields)."""

    time_min: Annotated[float | None, _empty_is(None), _EMPTY_OR_NUMBER] = Field(
        None, allow_inf_nan=False, description="Extension: keep frames whose mid-exposure time (BTJD = BJD - "
                                               "2457000, TDB) is at least this; empty means none.")
    time_max: Annotated[float | None, _empty_is(None), _EMPTY_OR_NUMBER] = Field(
        None, allow_inf_nan=False, description="Extension: keep frames whose mid-exposure time (BTJD, TDB) is at "
                                               "most this (inclusive); empty means none.")
    frame_bin: Annotated[int, _empty_is(1), _EMPTY_OR_COUNT] = Field(
        1, ge=1, le=MAX_FRAME_BIN,
        description="Extension: average this many frames into each cadence (FLUX mean, FLUX_ERR in quadrature over "
                    "the frames used, QUALITY OR); a trailing partial bin is dropped. Empty means 1.")
    _window: TimeWindow = PrivateAttr()

    @field_validator("time_max")
    @classmethod
    def _after_min(cls, value: float | None, info: Any) -> float | None:
        low = info.data.get("time_min")
        if value is not None and low is not None and value < low:
            raise ValueError(f"time_max ({value!r}) is before time_min ({low!r})")
        return value

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self._window = TimeWindow(self.time_min, self.time_max, self.frame_bin)

    @property
    def time_window(self) -> TimeWindow:
        """The window as the engine takes it (the default: every frame, unbinned)."""
        return self._window

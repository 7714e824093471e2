"""The base class of every configuration section."""

import msgspec


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A frozen, strict configuration object: unknown keys are errors."""

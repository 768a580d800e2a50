"""Rate cards: one YAML file per client that prices its charges (SPEC §6).

Decisions where the contract is silent (the lead's brief asked for them to be written down):

- YAML is read with a subclass of ``yaml.SafeLoader`` (no Python tags can construct
  anything) that also refuses duplicate keys; merge keys (``<<: *base``) are allowed. A card
  whose aliases expand to more than 100,000 values (an alias bomb) is refused before it is
  built. ``rules`` is a plain ``NAME.lua`` of ``lua/rules/`` (the engine's own pattern).
- Rates, tier rates, ``markup_pct``, ``package_size`` and ``up_to`` carry at most 6 decimal
  places, like quantities (``decimals.parse_decimal``): a per-unit rate of 0.000125 fits,
  and nothing realistic needs more. Flat and minimum ``amount`` carry at most the currency's
  minor unit (USD 250.005 is refused: it could never be invoiced as written).
- Everything priced is >= 0 (``markup_pct`` included; a discount is a separate charge);
  ``package_size`` and ``up_to`` are > 0.
- ``gl_account``, ``name``, ``description`` must be strings: an unquoted ``0430`` is octal to
  YAML 1.1, so numbers are refused with a hint to quote them.
- Keys a model does not use are refused, as are unknown keys (typo protection); the message
  says which. ``aggregate`` is allowed on per_unit, graduated, volume and package only.
- The last tier of graduated/volume must have ``up_to: null``: a capped last tier would leave
  larger quantities without a price.
- A minimum's code may not also be a charge code of its version; ``covers`` names charge
  codes of the same version (flat fees included) or is ``all``.
- ``category`` (invoice grouping): explicit, else by code prefix -- PICK_, PACK_, MAT_, RECV_,
  RETURN_, CANCEL_, DISPOSAL_ are handling; STORAGE_ storage; SHIP_ shipping; KIT_, LABOR_
  value_added -- and anything else, flat fees without such a prefix and all minimums, fees.
- ``effective_from`` must be a date (a YAML date or a "YYYY-MM-DD" string, not a timestamp);
  versions may be written in any order and are sorted.
- Two files for one client (acme.yaml and acme.yml) are both refused.
"""

from billing_pipeline.ratecards.cli import main_validate
from billing_pipeline.ratecards.currencies import MINOR_UNITS, minor_units
from billing_pipeline.ratecards.loader import (
    RateCardError,
    card_files,
    load_ratecard,
    load_ratecards,
    validate_files,
)
from billing_pipeline.ratecards.model import (
    CATEGORIES,
    CATEGORY_TITLES,
    ChargeSpec,
    Minimum,
    RateCard,
    Tier,
    Version,
    default_category,
    is_per_day,
    last_day_of_month,
)

__all__ = [
    "CATEGORIES",
    "CATEGORY_TITLES",
    "MINOR_UNITS",
    "ChargeSpec",
    "Minimum",
    "RateCard",
    "RateCardError",
    "Tier",
    "Version",
    "card_files",
    "default_category",
    "is_per_day",
    "last_day_of_month",
    "load_ratecard",
    "load_ratecards",
    "main_validate",
    "minor_units",
    "validate_files",
]

"""Invoice files of a client-month (SPEC §7): lines CSV, JSON document, printable HTML.

Decisions where the contract is silent:

- Quantities are written normalized (3.500000 -> 3.5; never an exponent: 1E+2 -> 100).
  Unit rates are written as the rate card wrote them (30.00 stays 30.00). Amounts and the
  total carry exactly the currency's decimals (JPY 1500, KWD 1.250). A cost_plus basis
  carries at least the currency's decimals (15.5 -> 15.50) and more only if it has them.
- ``unit_rate`` is empty for cost_plus; flat lines show their amount as unit rate and
  minimum lines the shortfall (quantity 1 x unit_rate = amount).
- invoice.json adds ``client_name`` and, per line, ``category``, ``model``, ``tier``,
  ``first_date``, ``last_date``, ``ratecard_version``, ``adjusts`` and ``activity`` (when a
  summary is given). Decimals are JSON strings, never numbers (a float would lose cents).
- ``fingerprints`` are written as given; ``ratecard`` defaults to the card's sha256.
- Rendering a month with unpriced charges raises ``ValueError`` (SPEC §5: no files).
- Adjustment lines (``billing_pipeline.closing``: charges of a closed month that changed)
  are lines like any other, model ``adjustment``, category ``adjustments``, code
  ``ADJ_<CODE>``, quantity 1 and unit_rate = amount = the delta; ``adjusts`` names the
  invoice and code they correct (``INV-ACME-202610:PICK_ORDER``), and so does the
  description, which is all the CSV carries (its header is fixed by SPEC §7). The HTML shows
  them last, under "Adjustments to earlier invoices".
- The HTML groups lines by category (handling, storage, shipping, value-added, fees) with
  subtotals, shows thousands separators (CSV and JSON stay plain), at most 5 example event
  ids per line, and the input fingerprints in the footer. No scripts, no external links.
"""

from billing_pipeline.invoices.files import CSV_HEADER, render_invoice_files
from billing_pipeline.invoices.model import ActivitySummary, invoice_id

__all__ = ["CSV_HEADER", "ActivitySummary", "invoice_id", "render_invoice_files"]

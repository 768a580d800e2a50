"""Billing months written ``YYYY-MM``, the way invoices, datasets and the CLI name them."""

from __future__ import annotations

import calendar
from datetime import date, timedelta


def first_day(month: str) -> date:
    return date.fromisoformat(f"{month}-01")


def month_days(month: str) -> list[date]:
    first = first_day(month)
    count = calendar.monthrange(first.year, first.month)[1]
    return [first + timedelta(days=i) for i in range(count)]


def next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:])
    return f"{year + mon // 12}-{mon % 12 + 1:02d}"


def previous_month(month: str) -> str:
    first = first_day(month)
    return f"{first - timedelta(days=1):%Y-%m}"

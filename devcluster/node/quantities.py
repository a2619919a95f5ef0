"""Kubernetes resource quantities ("500m", "128Mi", "1e3") as numbers.

Called by `environment` (resourceFieldRef), `volumes` (downward API) and
`running` (memory limits). Pure functions.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

_SUFFIXES = {
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}


def parse_quantity(text: str | int | float) -> Decimal:
    """The value of a quantity; raises ValueError when it is not one."""
    if isinstance(text, int | float):
        return Decimal(str(text))
    text = text.strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number = text[: -len(suffix)]
            break
    else:
        suffix, number = "", text
    try:
        return Decimal(number) * _SUFFIXES[suffix]
    except InvalidOperation as error:
        raise ValueError(f"not a quantity: {text!r}") from error


def format_resource(resource: str, value: Decimal, divisor: Decimal) -> str:
    """A resource value for the downward API, rounded up as the kubelet does."""
    del resource  # cpu and memory round the same way: up, to a whole number
    if divisor <= 0:
        divisor = Decimal(1)
    return str(math.ceil(value / divisor))

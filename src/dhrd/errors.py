"""The one exception that the CLI turns into a one-line message and exit code 2."""


class DHRDInputError(Exception):
    """Bad input from the user: a file, row, field, option or model that cannot be used as given."""


def where(path: object, row: int | None = None, field: str | None = None) -> str:
    """``file:row N field 'x'``: the location prefix every input error starts with."""
    parts = [str(path)]
    if row is not None:
        parts.append(f"row {row}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ": ".join(parts)

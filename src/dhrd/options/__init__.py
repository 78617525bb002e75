"""Command options declared once as dataclass fields: the typer glue and each command's arguments."""

"""Placeholder command group; filled in by its area."""


def register(sub) -> None:  # noqa: D401 - nothing yet
    return None

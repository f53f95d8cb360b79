"""A name -> object table with "did you mean" errors, shared by passes, exporters and the zoo."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from vitopt.errors import InputError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to entries; an unknown name raises ``error`` with a close-match hint."""

    def __init__(self, kind: str, *, error: type[InputError] = InputError) -> None:
        self.kind = kind
        self._error = error
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            hint = did_you_mean(name, self._entries) or f"known: {', '.join(self.names()) or 'none yet'}"
            raise self._error(f"unknown {self.kind} {name!r}", hint=hint) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

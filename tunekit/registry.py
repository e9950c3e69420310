"""Named components (datasets, models, optimizers, ...) looked up from config strings.

A registry is a plain dict filled by a decorator, like timm's `register_model`.
An unknown name raises `UnknownName` with a did-you-mean built from the registered names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def did_you_mean(word: str, options: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """A hint naming the closest option, or None when nothing is close."""
    close = difflib.get_close_matches(str(word), sorted(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


class UnknownName(KeyError):
    def __init__(self, kind: str, name: str, options: list[str]):
        self.kind, self.name, self.options = kind, name, options
        self.hint = did_you_mean(name, options) or f"choose one of: {', '.join(options)}"
        super().__init__(f"unknown {kind} '{name}'")

    def __str__(self) -> str:
        return f"unknown {self.kind} '{self.name}'"


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(self.kind, str(name), self.names()) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

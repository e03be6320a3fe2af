"""Progress reporting as the library sees it: a callable that makes a bar-like object.

The CLI passes tqdm; library code and tests pass NullProgress. Nothing here draws."""

from __future__ import annotations

from typing import Callable, Protocol


class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...

    def close(self) -> object: ...


class NullProgress:
    """A bar that shows nothing."""

    def __init__(self, total: int = 0, desc: str = ""):
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


# progress(total=N, desc="embedding") -> a Bar
Progress = Callable[..., Bar]

"""A fixed order of taxon names, shared by every input of one analysis."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from phylovi.errors import ConfigError, TaxonMismatchError


class TaxonOrder:
    """An immutable sequence of distinct taxon names.

    Taxon ``i`` is bit ``i`` of every clade and split bitset. The order is
    fixed once per analysis (usually the alignment's order) and checked
    wherever two inputs meet.
    """

    __slots__ = ("_names", "_index")

    def __init__(self, names: Iterable[str]):
        if not isinstance(names, Iterable):  # a string is its letters: TaxonOrder("abcd")
            raise ConfigError(f"taxon names are given as a list of strings, got {names!r:.60}")
        names = tuple(names)
        for name in names:
            if not isinstance(name, str):
                raise ConfigError(f"a taxon name must be a string, got {name!r:.60}")
        self._names = tuple(str(name) for name in names)  # numpy's str_ becomes str
        self._index = {name: i for i, name in enumerate(self._names)}
        if len(self._index) != len(self._names):
            seen = set()
            duplicate = next(n for n in self._names if n in seen or seen.add(n))
            raise TaxonMismatchError(f"taxon {duplicate!r} appears more than once")

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def full_mask(self) -> int:
        """The bitset with every taxon set."""
        return (1 << len(self._names)) - 1

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __getitem__(self, i: int) -> str:
        return self._names[i]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaxonOrder) and self._names == other._names

    def __hash__(self) -> int:
        return hash(self._names)

    def __repr__(self) -> str:
        return f"TaxonOrder({list(self._names)!r})"

    def index(self, name: str) -> int:
        """Position of ``name``; raises :class:`TaxonMismatchError` if absent."""
        try:
            return self._index[name]
        except KeyError:
            raise TaxonMismatchError(f"taxon {name!r} is not in the taxon set") from None

    def require_same_set(self, other: "TaxonOrder", left: str = "the first input",
                         right: str = "the second input") -> None:
        """Raise :class:`TaxonMismatchError` naming the taxa that differ, if any.

        Only the sets are compared; use :meth:`reorder` to map one order onto
        the other.
        """
        only_left = sorted(set(self._names) - set(other._names))
        only_right = sorted(set(other._names) - set(self._names))
        if not only_left and not only_right:
            return
        parts = []
        if only_right:
            parts.append(f"{_listing(only_right)} in {right} {_be(only_right)} not in {left}")
        if only_left:
            parts.append(f"{_listing(only_left)} in {left} {_be(only_left)} not in {right}")
        raise TaxonMismatchError("; ".join(parts), only_left=only_left, only_right=only_right)


def _be(names) -> str:
    return "is" if len(names) == 1 else "are"


def _listing(names, limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ("taxon " if len(names) == 1 else "taxa ") + shown + more

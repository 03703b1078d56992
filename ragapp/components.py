"""Components a caller passes in (embedder, reranker, generator), checked where they enter."""

from __future__ import annotations

import inspect


def checked(component, protocol: type, what: str):
    """`component` when it has every member of `protocol` (None stays None); TypeError naming the missing ones.
    Looked up statically: isinstance() on a runtime protocol would call every property, and an embedder's
    `dimension` loads its model (models load on first use, not when a RAG is made)."""
    if component is None:
        return component
    members = set(protocol.__annotations__) | {n for n, v in vars(protocol).items()
                                                 if not n.startswith("_") and (callable(v) or isinstance(v, property))}
    missing = sorted(m for m in members if not has_member(component, m))
    if missing:
        raise TypeError(f"{what} {type(component).__name__} lacks {', '.join(missing)} of ragapp.{protocol.__name__}; "
                        f"subclass ragapp.{protocol.__name__} to inherit the defaults of its optional members")
    return component


def has_member(component: object, name: str) -> bool:
    try:
        inspect.getattr_static(component, name)
        return True
    except AttributeError:
        return False

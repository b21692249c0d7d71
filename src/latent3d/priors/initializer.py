"""The protocol of a text-to-3D initialiser: what score distillation starts from instead of random Gaussians
(LucidDreamer starts from Point-E's points, Liang et al. 2024, Sec. 4.1). ``dream --init NAME`` takes any registered
one, so that one system depends on this interface, never on another system's modules; 3DVADER's generator is one
(:func:`latent3d.systems.autodecoder.command.object_initializer`, registered by :mod:`latent3d.systems`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from latent3d.errors import UserError

if TYPE_CHECKING:
    from latent3d.io.ply import GaussianPLY


@runtime_checkable
class TextTo3DInitializer(Protocol):
    """Makes a 3D starting point from a prompt."""

    def check(self) -> None:
        """Raise one :class:`UserError` line if the initialiser cannot work (a missing or damaged model), before
        anything large loads."""

    def gaussians(self, prompt: str, seed: int, max_points: int) -> GaussianPLY:
        """At most ``max_points`` Gaussians for ``prompt`` in the object frame (z up, inside the unit cube)."""


_REGISTRY: dict[str, Callable[[str], TextTo3DInitializer]] = {}


def register_initializer(name: str, factory: Callable[[str], TextTo3DInitializer]) -> None:
    """Make ``dream --init NAME`` use ``factory(model)`` (``model``: a model name or folder of that initialiser)."""
    _REGISTRY[name] = factory


def initializer_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def get_initializer(name: str, model: str) -> TextTo3DInitializer:
    """The registered initialiser ``name`` over ``model`` (one UserError line for an unknown name)."""
    if name not in _REGISTRY:
        known = ", ".join(initializer_names()) or "none registered"
        raise UserError(f"no text-to-3D initialiser called {name!r} (known: {known})")
    return _REGISTRY[name](model)

"""The devices whose rows a computation is sharded over (sharded EM and the NumPyro likelihood).

EM's statistics and the log-likelihood are sums over rows, so rows split over devices give
the one-device answer up to summation order: every device reduces its own share, one
``psum`` adds the shares, and the small parameter update runs alike on every device.
``devices`` everywhere in the package takes the forms of :func:`resolve_devices`.
"""

from __future__ import annotations

import numbers

import jax
import numpy as np
from jax.sharding import Mesh

from . import _jax  # noqa: F401  (64-bit mode on before any array; see _jax)

__all__ = ["ROWS", "resolve_devices", "row_mesh"]

#: The mesh axis that row blocks are split over.
ROWS = "rows"


def resolve_devices(devices, *, default_all: bool = True) -> tuple:
    """The devices named by a ``devices`` argument.

    Parameters
    ----------
    devices : None, int or sequence of jax.Device
        None: every local device of the default backend (``default_all``) or the first one;
        an int N: the first N local devices; a sequence: exactly those devices (distinct, of
        one platform).
    default_all : bool
        What None means.

    Returns
    -------
    tuple of jax.Device

    Examples
    --------
    >>> import jax
    >>> from bayesgmm._devices import resolve_devices
    >>> resolve_devices(1) == (jax.local_devices()[0],)
    True
    """
    local = jax.local_devices()
    if devices is None:
        return tuple(local) if default_all else (local[0],)
    if isinstance(devices, numbers.Integral) and not isinstance(devices, bool):
        if not 1 <= int(devices) <= len(local):
            raise ValueError(
                f"devices must be between 1 and the {len(local)} local device(s) of the "
                f"{local[0].platform} backend, got {int(devices)} (more host CPU devices come "
                "from XLA_FLAGS=--xla_force_host_platform_device_count=N or "
                "numpyro.set_host_device_count(N) before JAX starts)"
            )
        return tuple(local[: int(devices)])
    if isinstance(devices, jax.Device):
        devices = [devices]
    try:
        chosen = tuple(devices)
    except TypeError:
        raise TypeError(
            "devices must be None, a number of local devices or a sequence of jax.Device, "
            f"got {type(devices).__name__}"
        ) from None
    if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
        raise TypeError(
            "devices must be None, a number of local devices or a non-empty sequence of "
            f"jax.Device, got {devices!r}"
        )
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"devices must be distinct, got {list(chosen)}")
    if len({d.platform for d in chosen}) > 1:
        raise ValueError(f"devices must all be of one platform, got {list(chosen)}")
    return chosen


def row_mesh(devices: tuple) -> Mesh | None:
    """A one-axis mesh (axis :data:`ROWS`) over ``devices``; None for a single device (the
    unsharded program, unchanged)."""
    if len(devices) < 2:
        return None
    return Mesh(np.array(devices, dtype=object), (ROWS,))

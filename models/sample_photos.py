"""Real photographs for tests and benchmarks, from scikit-image's bundled sample data.

No image can be downloaded here, and synthetic emblems say nothing about how a model behaves on
real content. scikit-image's wheel ships a dozen real photographs (a cat, coffee, an astronaut, a
rocket, a motorcycle, a retina, the Hubble deep field, a camera man, the moon, textures: see
``skimage/data/README.txt`` for their sources and licences). It is in the ``dev`` extra.
"""

from __future__ import annotations

from importlib import resources

PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "camera.png",
    "moon.png",
    "grass.png",
    "brick.png",
    "gravel.png",
)


def sample_photos() -> list[tuple[str, bytes]]:
    """``(file name, encoded bytes)`` of each photograph, as stored (PNG or JPEG, colour or grey)."""
    try:
        folder = resources.files("skimage").joinpath("data")
    except ModuleNotFoundError as exc:
        raise ImportError(
            "The real photographs come from scikit-image's sample data: "
            "pip install scikit-image (it is in the dev extra)."
        ) from exc
    return [(name, folder.joinpath(name).read_bytes()) for name in PHOTOS]

"""The least image sizes the networks take: properties of their layout, not of the data.

Light (no numpy, no TensorFlow), so the data checks and the command line refuse too-small
images before any network is built.

Example:
    >>> from kdarts.geometry import IMAGENET_MIN_SIZE, MIN_IMAGE_SIZE
    >>> MIN_IMAGE_SIZE, IMAGENET_MIN_SIZE
    (4, 32)
"""

#: The least image side the networks take: they halve the map twice (two reduction
#: cells, stride 2), and 4 is the smallest side both halvings reduce (4 → 2 → 1).
#: Smaller images run (padding keeps a 1x1 map), but the second reduction then
#: has nothing left to reduce, so kdarts refuses them.
MIN_IMAGE_SIZE: int = 4
#: The least image side of the ImageNet network (``imagenet_stem``,
#: :class:`kdarts.image.ImageNetStem`): its three stride-2 stem convs and two reductions
#: halve the map five times (32 → 4 → 2 → 1).
IMAGENET_MIN_SIZE: int = 32

__all__ = ["IMAGENET_MIN_SIZE", "MIN_IMAGE_SIZE"]

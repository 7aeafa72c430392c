"""The shapes world (``docs/shapes-world.md``): captions, sampling, rendering, reading.

Pure numpy + Pillow. Typical use::

    rng = numpy.random.default_rng(0)
    scene = sample_scene(rng)                 # caption words + random layout
    result = render(scene)                    # image (64, 64, 3) uint8, masks, scene
    edited = render(edit_scene(scene, "a red star on a gray background"))
    reading = read_image(result.image, n_objects=len(scene.objects), style=scene.prefix)
"""

from . import spec
from .dataset import ground_truth, iter_samples, read_dataset, rle_decode, rle_encode, scene_at, write_dataset
from .reader import ReadObject, Reading, colour_of, mask_iou, match_objects, read_image, texture_strength
from .render import RenderResult, outline, render, shape_mask, star_vertices, texture_pattern
from .sample import layout_scene, sample_caption_spec, sample_layout, sample_scene
from .scene import Box, CaptionError, CaptionSpec, EditError, ObjectSpec, Scene, WorldObject, edit_scene, parse_caption

__all__ = [
    "spec",
    "Box",
    "CaptionError",
    "CaptionSpec",
    "EditError",
    "ObjectSpec",
    "Scene",
    "WorldObject",
    "edit_scene",
    "parse_caption",
    "sample_caption_spec",
    "sample_layout",
    "sample_scene",
    "layout_scene",
    "RenderResult",
    "render",
    "shape_mask",
    "star_vertices",
    "outline",
    "texture_pattern",
    "Reading",
    "ReadObject",
    "read_image",
    "colour_of",
    "texture_strength",
    "mask_iou",
    "match_objects",
    "iter_samples",
    "ground_truth",
    "write_dataset",
    "read_dataset",
    "scene_at",
    "rle_encode",
    "rle_decode",
]

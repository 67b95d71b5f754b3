"""Measuring sample quality honestly: every number next to its reference points.

- ``sample_distance`` / ``reference_distance``: energy distance between 2-D point sets,
  and its floor (two independent samples of the data). (``distance2d``)
- ``frechet_distance``: the Frechet distance between Gaussians fitted to features. (``frechet``)
- ``valid_fraction``, ``class_accuracy``, ``attribute_entropy``, ``quality_report``:
  image quality on the shapes set, scored by the judge of ``dlcourse.judge``. (``quality``)
- ``matched_noise`` and the other impostors: the noise baseline, and what the judge
  learns to reject. (``baselines``)
- ``guidance_sweep``: fidelity against diversity at every guidance scale. (``guidance_sweep``)
"""

from .baselines import (blend, color_noise, gaussian_blur, matched_noise, off_palette_colors,
                                       overlay, palette, patch_shuffle, recolor)
from .distance2d import reference_distance, reference_distances, sample_distance
from .frechet import frechet_distance, frechet_distance_gaussians, gaussian_fit
from .guidance_sweep import GuidancePoint, guidance_sweep
from .quality import (AttributeEntropy, QualityReport, attribute_entropy, class_accuracy,
                                      entropy_bits, quality_report, valid_fraction)

__all__ = [
    "AttributeEntropy", "GuidancePoint", "QualityReport", "attribute_entropy", "blend", "class_accuracy",
    "color_noise", "entropy_bits", "frechet_distance", "frechet_distance_gaussians", "gaussian_blur", "gaussian_fit",
    "guidance_sweep", "matched_noise", "off_palette_colors", "overlay", "palette", "patch_shuffle", "quality_report",
    "recolor", "reference_distance", "reference_distances", "sample_distance", "valid_fraction",
]

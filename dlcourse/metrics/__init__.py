"""Measuring sample quality honestly: every number next to its reference points.

- ``sample_distance`` / ``reference_distance``: energy distance between 2-D point sets,
  and its floor (two independent samples of the data). (``distance2d``)
- ``frechet_distance``: the Frechet distance between Gaussians fitted to features. (``frechet``)
- ``valid_fraction``, ``class_accuracy``, ``attribute_entropy``, ``quality_report``:
  image quality on the shapes set, scored by the judge of ``dlcourse.judge``. (``quality``)
- ``matched_noise`` and the other impostors: the noise baseline, and what the judge
  learns to reject. (``baselines``)
"""

from dlcourse.metrics.baselines import (blend, color_noise, gaussian_blur, matched_noise, off_palette_colors,
                                       overlay, palette, patch_shuffle, recolor)
from dlcourse.metrics.distance2d import reference_distance, reference_distances, sample_distance
from dlcourse.metrics.frechet import frechet_distance, frechet_distance_gaussians, gaussian_fit
from dlcourse.metrics.quality import (AttributeEntropy, QualityReport, attribute_entropy, class_accuracy,
                                      entropy_bits, quality_report, valid_fraction)

__all__ = [
    "AttributeEntropy", "QualityReport", "attribute_entropy", "blend", "class_accuracy", "color_noise",
    "entropy_bits", "frechet_distance", "frechet_distance_gaussians", "gaussian_blur", "gaussian_fit",
    "matched_noise", "off_palette_colors", "overlay", "palette", "patch_shuffle", "quality_report", "recolor",
    "reference_distance", "reference_distances", "sample_distance", "valid_fraction",
]

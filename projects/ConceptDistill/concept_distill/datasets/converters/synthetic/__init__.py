"""Synthetic ScanNet-format scenes: furnished rooms, scanned clouds, rendered RGB-D frames."""
from concept_distill.datasets.converters.synthetic.furniture import CLASSES, DETECTION_CLASSES
from concept_distill.datasets.converters.synthetic.scannet_raw_writer import (
           write_label_map,
           write_raw_scene,
)
from concept_distill.datasets.converters.synthetic.scene import (
           SyntheticFrame,
           SyntheticScene,
           make_scene,
)
from concept_distill.datasets.converters.synthetic.synthetic_scannet import (
           create_synthetic_scannet,
           generate_scenes,
           scene_name,
)

__all__ = ['CLASSES', 'DETECTION_CLASSES', 'SyntheticFrame', 'SyntheticScene',
           'create_synthetic_scannet', 'generate_scenes', 'make_scene', 'scene_name',
           'write_label_map', 'write_raw_scene']

# MinkUNet34 (w32, spconv) on ScanNet v2 semantic segmentation (20 classes), from scratch.
_base_ = [
    '../_base_/datasets/scannet-seg-voxel.py',
    './_base_/minkunet34-w32-spconv_indoor-seg.py',
]

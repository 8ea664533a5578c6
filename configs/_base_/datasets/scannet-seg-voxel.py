# ScanNet v2 semantic segmentation (20 classes) on whole scenes, for voxel models (MinkUNet):
# mmdet3d's scannet-seg.py with the whole-scene pipelines of indoor-seg-voxel-pipelines.py.
_base_ = ['mmdet3d::_base_/datasets/scannet-seg.py', './indoor-seg-voxel-pipelines.py']

# mmdet3d's dataset refuses to train without resampled `scene_idxs`; this subclass (in
# concept_distill) visits every scene once per epoch instead.
dataset_type = 'ScanNetWholeSceneSegDataset'
train_pipeline = {{_base_.voxel_seg_train_pipeline}}
test_pipeline = {{_base_.voxel_seg_test_pipeline}}

train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    dataset=dict(type=dataset_type, pipeline=train_pipeline, scene_idxs=None))
test_dataloader = dict(dataset=dict(type=dataset_type, pipeline=test_pipeline))
val_dataloader = test_dataloader

# S3DIS semantic segmentation (13 classes; train Areas 1-4 and 6, test Area 5) on whole rooms,
# for voxel models (MinkUNet): mmdet3d's s3dis-seg.py with the whole-scene pipelines of
# indoor-seg-voxel-pipelines.py (no 1 m block sampling, no resampled scene indices).
_base_ = ['mmdet3d::_base_/datasets/s3dis-seg.py', './indoor-seg-voxel-pipelines.py']

# mmdet3d's dataset refuses to train without resampled `scene_idxs`; this subclass (in
# concept_distill) visits every room once per epoch instead.
dataset_type = 'S3DISWholeSceneSegDataset'
train_pipeline = {{_base_.voxel_seg_train_pipeline}}
test_pipeline = {{_base_.voxel_seg_test_pipeline}}

train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    dataset=dict(type=dataset_type, pipeline=train_pipeline, scene_idxs=None))
test_dataloader = dict(dataset=dict(type=dataset_type, pipeline=test_pipeline, scene_idxs=None))
val_dataloader = test_dataloader

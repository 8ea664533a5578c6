# The project's runtime: mmdet3d's, plus the runner and the plugin import, so the same config
# behaves the same under this project's tools/train.py and mmdet3d's own.
_base_ = ['mmdet3d::_base_/default_runtime.py']

custom_imports = dict(imports=['concept_distill'], allow_failed_imports=False)
# mmengine's Runner + the checkpoint trust model (resume trusted, load_from safe unless
# trust_checkpoint=True) and atomic checkpoint writes: concept_distill/engine/runner.py.
runner_type = 'ConceptDistillRunner'

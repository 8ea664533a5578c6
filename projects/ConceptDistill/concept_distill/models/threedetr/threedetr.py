"""3DETR detector (Misra et al., ICCV 2021) as an mmdet3d single-stage detector."""
import torch
from mmdet3d.models.detectors.single_stage import SingleStage3DDetector
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample
from torch import Tensor


@MODELS.register_module()
class ThreeDETR(SingleStage3DDetector):
    """Encoder backbone (``ThreeDETREncoder``) + set-prediction head (``ThreeDETRHead``).

    The head also needs the raw points (it normalises positions and sizes by each scene's
    extent), so ``loss`` / ``predict`` pass them along, as mmdet3d's VoteNet does.
    """

    def extract_feat(self, batch_inputs_dict: dict) -> dict:
        """Encode the batch: points are stacked, so every sample needs the same count."""
        points = batch_inputs_dict['points']
        if len({p.shape for p in points}) != 1:
            raise ValueError('ThreeDETR needs equally sized point clouds in a batch; add a '
                             "'PointSample' step to the pipeline. Got sizes "
                             f'{[tuple(p.shape) for p in points]}')
        return self.backbone(torch.stack(points))

    def loss(self, batch_inputs_dict: dict, batch_data_samples: list[Det3DDataSample],
             **kwargs) -> dict[str, Tensor]:
        """Set losses of every decoder layer."""
        feats = self.extract_feat(batch_inputs_dict)
        return self.bbox_head.loss(batch_inputs_dict['points'], feats, batch_data_samples)

    def predict(self, batch_inputs_dict: dict, batch_data_samples: list[Det3DDataSample],
                **kwargs) -> list[Det3DDataSample]:
        """Boxes of the last decoder layer in ``pred_instances_3d``."""
        feats = self.extract_feat(batch_inputs_dict)
        results = self.bbox_head.predict(batch_inputs_dict['points'], feats,
                                         batch_data_samples)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs_dict: dict, batch_data_samples=None, **kwargs):
        """Raw per-layer predictions (``mode='tensor'``)."""
        feats = self.extract_feat(batch_inputs_dict)
        return self.bbox_head(feats, batch_inputs_dict['points'])

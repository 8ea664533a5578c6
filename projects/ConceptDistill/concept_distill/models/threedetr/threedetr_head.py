"""3DETR's detection head: FPS queries, Fourier positions, transformer decoder, box MLPs."""
import torch
import torch.nn.functional as F
from mmcv.ops import furthest_point_sample
from mmdet3d.models.layers import aligned_3d_nms
from mmdet3d.registry import MODELS
from mmdet3d.structures import DepthInstance3DBoxes, Det3DDataSample
from mmengine import dist
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from concept_distill.models.threedetr.conv_mlp import build_conv_mlp
from concept_distill.models.threedetr.fourier_embedding import (
    FourierPositionEmbedding3D,
    normalize_to_scene,
)
from concept_distill.models.threedetr.heading_coder import HeadingBinCoder
from concept_distill.models.threedetr.threedetr_decoder import ThreeDETRDecoder

# Scenes smaller than this (metres) would make normalised sizes explode.
_MIN_SCENE_EXTENT = 0.1


@MODELS.register_module()
class ThreeDETRHead(BaseModule):
    """Decode boxes from encoder tokens with a set of FPS-sampled queries.

    Queries are ``num_queries`` encoder points chosen by furthest point sampling; their
    Fourier embeddings (through a small MLP) are the query positions, the decoder input is
    zeros. Every decoder layer's output is decoded into boxes: centre = query xyz + an
    offset in [-0.5, 0.5] m, size = sigmoid * scene extent, heading = bin class + residual.
    Boxes are output without NMS unless ``test_cfg.nms_thr`` is set.

    Args:
        num_classes: object classes.
        in_channels: encoder token width.
        embed_dims: decoder width.
        num_queries: number of queries (paper: 256 ScanNet, 128 SUN RGB-D).
        num_heading_bins: heading bins; 1 means axis-aligned boxes and no heading heads.
        proj_hidden_layers: hidden layers of the encoder-to-decoder projection (3DETR uses
            2 with the plain encoder, 1 with the masked one).
        decoder: kwargs of :class:`ThreeDETRDecoder`.
        mlp_dropout: dropout in the prediction MLPs.
        gauss_scale: frequency scale of the Fourier embedding.
        loss: config of the per-layer set loss (``ThreeDETRSetLoss``).
        train_cfg: unused (matching settings live in ``loss.matcher``).
        test_cfg: ``score_thr`` (objectness threshold), ``per_class_proposal`` (emit each
            box once per class, scored objectness x class probability), ``nms_thr``
            (None = NMS-free; a float applies per-class axis-aligned 3D NMS).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int = 256,
                 embed_dims: int = 256,
                 num_queries: int = 256,
                 num_heading_bins: int = 1,
                 proj_hidden_layers: int = 2,
                 decoder: dict | None = None,
                 mlp_dropout: float = 0.3,
                 gauss_scale: float = 1.0,
                 loss: dict | None = None,
                 train_cfg: dict | None = None,
                 test_cfg: dict | None = None,
                 init_cfg: dict | list | None = None):
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.heading_coder = HeadingBinCoder(num_heading_bins)
        self.with_heading = num_heading_bins > 1
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg or {}
        self.encoder_proj = build_conv_mlp(
            in_channels, [in_channels] * proj_hidden_layers, embed_dims, norm=True,
            out_bias=False, out_norm=True, out_act=True)
        self.pos_embed = FourierPositionEmbedding3D(embed_dims, gauss_scale=gauss_scale)
        self.query_proj = build_conv_mlp(embed_dims, [embed_dims], embed_dims, norm=False,
                                         hidden_bias=True, out_act=True)
        self.decoder = ThreeDETRDecoder(embed_dims=embed_dims, **(decoder or {}))

        def mlp(out: int):
            return build_conv_mlp(embed_dims, [embed_dims, embed_dims], out, norm=True,
                                  dropout=mlp_dropout)

        # Last class logit = "no object".
        self.cls_head = mlp(num_classes + 1)
        self.center_head = mlp(3)
        self.size_head = mlp(3)
        if self.with_heading:
            self.heading_cls_head = mlp(num_heading_bins)
            self.heading_res_head = mlp(num_heading_bins)
        loss = dict(loss or dict(type='ThreeDETRSetLoss'))
        loss.setdefault('num_classes', num_classes)
        self.loss_module = MODELS.build(loss)

    # ------------------------------------------------------------------ forward
    @staticmethod
    def scene_bounds(points: list[Tensor] | Tensor) -> tuple[Tensor, Tensor]:
        """Per-scene (B, 3) min and max of the input xyz (3DETR normalises by these)."""
        mins = torch.stack([p[:, :3].min(0)[0] for p in points])
        maxs = torch.stack([p[:, :3].max(0)[0] for p in points])
        return mins, maxs

    def forward(self, feats: dict, points: list[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        """Run the decoder; return one prediction dict per decoder layer (last = final)."""
        enc_xyz = feats['xyz'].contiguous()
        xyz_min, xyz_max = self.scene_bounds(points)
        memory = self.encoder_proj(feats['features'].transpose(1, 2)).transpose(1, 2)
        num_q = min(self.num_queries, enc_xyz.shape[1])
        query_idx = furthest_point_sample(enc_xyz, num_q).long()
        query_xyz = enc_xyz.gather(1, query_idx[..., None].expand(-1, -1, 3))
        query_pos = self.pos_embed(query_xyz, xyz_min, xyz_max)
        query_pos = self.query_proj(query_pos.transpose(1, 2)).transpose(1, 2)
        memory_pos = self.pos_embed(enc_xyz, xyz_min, xyz_max)
        hs = self.decoder(torch.zeros_like(query_pos), memory, query_pos, memory_pos)
        return self.decode_layers(hs, query_xyz, xyz_min, xyz_max)

    def decode_layers(self, hs: Tensor, query_xyz: Tensor, xyz_min: Tensor,
                      xyz_max: Tensor) -> list[dict[str, Tensor]]:
        """(L, B, Q, C) decoder outputs -> per-layer box parametrisations."""
        num_layers, bsz, num_q, ch = hs.shape
        x = hs.reshape(num_layers * bsz, num_q, ch).transpose(1, 2)

        def run(head) -> Tensor:
            return head(x).transpose(1, 2).reshape(num_layers, bsz, num_q, -1)

        cls_logits = run(self.cls_head)
        center_offset = run(self.center_head).sigmoid() - 0.5
        size_norm = run(self.size_head).sigmoid()
        extent = (xyz_max - xyz_min).clamp(min=_MIN_SCENE_EXTENT)
        outputs = []
        for i in range(num_layers):
            center = query_xyz + center_offset[i]
            pred = dict(cls_logits=cls_logits[i], center=center,
                        center_norm=normalize_to_scene(center, xyz_min, xyz_max),
                        size_norm=size_norm[i], size=size_norm[i] * extent[:, None],
                        heading_logits=None, heading_residual=None,
                        yaw=center.new_zeros(bsz, num_q))
            outputs.append(pred)
        if self.with_heading:
            heading_logits = run(self.heading_cls_head)
            heading_res = run(self.heading_res_head)
            for i, pred in enumerate(outputs):
                pred['heading_logits'] = heading_logits[i]
                pred['heading_residual'] = heading_res[i]
                pred['yaw'] = self.heading_coder.decode(heading_logits[i], heading_res[i])
        return outputs

    # ------------------------------------------------------------------ training
    def build_targets(self, batch_data_samples: list[Det3DDataSample], xyz_min: Tensor,
                      xyz_max: Tensor) -> dict[str, Tensor]:
        """Pack each sample's gt boxes (gravity centre, size, yaw, label) into (B, G, ...)."""
        device = xyz_min.device
        gts = [s.gt_instances_3d for s in batch_data_samples]
        counts = [len(g.labels_3d) for g in gts]
        bsz, g_max = len(gts), max(max(counts, default=0), 1)
        centers = xyz_min.new_zeros(bsz, g_max, 3)
        sizes = xyz_min.new_ones(bsz, g_max, 3)
        yaw = xyz_min.new_zeros(bsz, g_max)
        labels = torch.zeros(bsz, g_max, dtype=torch.long, device=device)
        for b, (gt, n) in enumerate(zip(gts, counts)):
            if n == 0:
                continue
            boxes = gt.bboxes_3d.to(device)
            centers[b, :n] = boxes.gravity_center
            sizes[b, :n] = boxes.dims
            if self.with_heading and boxes.with_yaw:
                yaw[b, :n] = boxes.yaw
            labels[b, :n] = gt.labels_3d.to(device)
        extent = (xyz_max - xyz_min).clamp(min=_MIN_SCENE_EXTENT)
        heading_cls, heading_res = self.heading_coder.encode(yaw)
        num_gt = torch.tensor(counts, device=device)
        total = num_gt.sum().float()
        if dist.is_distributed():
            # Same normaliser on every worker: the mean box count per worker.
            dist.all_reduce(total, op='mean')
        return dict(centers=centers, sizes=sizes, yaw=yaw, labels=labels,
                    centers_norm=normalize_to_scene(centers, xyz_min, xyz_max),
                    sizes_norm=sizes / extent[:, None], heading_cls=heading_cls,
                    heading_res=heading_res, num_gt=num_gt,
                    num_boxes=total.clamp(min=1).item())

    def loss(self, points: list[Tensor], feats: dict,
             batch_data_samples: list[Det3DDataSample]) -> dict[str, Tensor]:
        """Set losses on every decoder layer; intermediate ones are prefixed ``d{i}.``."""
        outputs = self(feats, points)
        xyz_min, xyz_max = self.scene_bounds(points)
        targets = self.build_targets(batch_data_samples, xyz_min, xyz_max)
        losses = {}
        last = len(outputs) - 1
        for i, pred in enumerate(outputs):
            prefix = '' if i == last else f'd{i}.'
            for k, v in self.loss_module(pred, targets).items():
                losses[prefix + k] = v
        return losses

    # ------------------------------------------------------------------ inference
    def predict(self, points: list[Tensor], feats: dict,
                batch_data_samples: list[Det3DDataSample]) -> list[InstanceData]:
        """Final-layer boxes of each sample as ``InstanceData`` (bboxes_3d, scores_3d,
        labels_3d)."""
        pred = self(feats, points)[-1]
        return [self.predict_single(pred, b, s.metainfo)
                for b, s in enumerate(batch_data_samples)]

    def predict_single(self, pred: dict[str, Tensor], b: int, meta: dict) -> InstanceData:
        """Turn one sample's query predictions into scored, labelled boxes."""
        cfg = self.test_cfg
        prob = F.softmax(pred['cls_logits'][b], dim=-1)
        cls_prob, objectness = prob[:, :-1], 1 - prob[:, -1]
        boxes = torch.cat([pred['center'][b], pred['size'][b], pred['yaw'][b, :, None]], -1)
        keep = objectness > cfg.get('score_thr', 0.05)
        nms_thr = cfg.get('nms_thr', None)
        if nms_thr is not None and keep.any():
            box_type = meta.get('box_type_3d', DepthInstance3DBoxes)
            corners = box_type(boxes, box_dim=7, with_yaw=self.with_heading,
                               origin=(0.5, 0.5, 0.5)).corners
            minmax = torch.cat([corners.min(1)[0], corners.max(1)[0]], -1)
            idx = keep.nonzero().flatten()
            picked = aligned_3d_nms(minmax[idx], objectness[idx], cls_prob[idx].argmax(-1),
                                    nms_thr)
            keep = torch.zeros_like(keep)
            keep[idx[picked]] = True
        boxes, cls_prob, objectness = boxes[keep], cls_prob[keep], objectness[keep]
        if cfg.get('per_class_proposal', True):
            num_cls = cls_prob.shape[1]
            scores = (cls_prob * objectness[:, None]).T.reshape(-1)
            labels = torch.arange(num_cls, device=boxes.device).repeat_interleave(len(boxes))
            boxes = boxes.repeat(num_cls, 1)
        else:
            scores, labels = objectness, cls_prob.argmax(-1)
        box_type = meta.get('box_type_3d', DepthInstance3DBoxes)
        result = InstanceData()
        result.bboxes_3d = box_type(boxes.detach(), box_dim=7, with_yaw=self.with_heading,
                                    origin=(0.5, 0.5, 0.5))
        result.scores_3d = scores.detach()
        result.labels_3d = labels
        return result

"""``ConceptDistillHook``: the name earlier configs use for both pre-training hooks at once."""
from __future__ import annotations

from mmdet3d.registry import HOOKS

from concept_distill.hooks.backbone_export_hook import BackboneExportHook
from concept_distill.hooks.frame_epoch_hook import FrameEpochHook
from concept_distill.hooks.frozen_teacher_hook import FrozenTeacherHook


@HOOKS.register_module()
class ConceptDistillHook(BackboneExportHook):
    """Alias kept for existing configs: FrozenTeacherHook + BackboneExportHook (+ the per-epoch
    frame offsets of FrameEpochHook) in one entry.

    New configs list the two hooks (``configs/_base_/concept-distill-runtime.py``).
    ``export_backbone=False`` keeps only the frozen-teacher part.
    """

    priority = 'LOWEST'

    def __init__(self, export_backbone: bool = True, log_alignment: bool = True,
                 write_latest: bool = True, prefix: str = 'backbone.') -> None:
        super().__init__(write_latest=write_latest, prefix=prefix)
        self.export_backbone = export_backbone
        self.frozen = FrozenTeacherHook(log_alignment=log_alignment)
        self.frames = FrameEpochHook()

    def before_train(self, runner) -> None:
        """Frozen-teacher checks, then the export book-keeping."""
        self.frozen.before_train(runner)
        super().before_train(runner)

    def before_train_epoch(self, runner) -> None:
        """Keep the teacher in eval mode; select this epoch's frames."""
        self.frozen.before_train_epoch(runner)
        self.frames.before_train_epoch(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Teacher key in the meta, then the iteration for export."""
        self.frozen.before_save_checkpoint(runner, checkpoint)
        super().before_save_checkpoint(runner, checkpoint)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Re-freeze, then mirror."""
        self.frozen.after_train_iter(runner, batch_idx, data_batch, outputs)
        if self.export_backbone:
            super().after_train_iter(runner, batch_idx, data_batch, outputs)

    def after_train_epoch(self, runner) -> None:
        """Mirror an epoch checkpoint when exporting."""
        if self.export_backbone:
            super().after_train_epoch(runner)

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        """Mirror a best checkpoint when exporting."""
        if self.export_backbone:
            super().after_val_epoch(runner, metrics)

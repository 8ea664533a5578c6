"""Transfer benchmark: does pre-training teach the 3D student what the teacher knows?

`run_transfer` (linear probe, few-label fine-tuning, scratch, teacher reference on held-out
objects), `write_table` / `format_table`, `train_render_teacher` (a small open_clip tower
trained on labelled renders, loadable as `CLIPTeacher(pretrained=...)`) and
`pretrain_objects` (a short pre-training through tools/train.py). See docs/transfer.md.
"""
from concept_distill.transfer.benchmark import (
    FRACTIONS,
    SEEDS,
    TransferError,
    check_goal,
    format_table,
    load_export,
    run_transfer,
    write_table,
)
from concept_distill.transfer.object_data import create_downstream_root, load_object_split
from concept_distill.transfer.render_teacher import (
    RENDER_TEACHER_ARCH,
    RENDER_TEACHER_MODEL,
    RenderTeacherError,
    teacher_config,
    train_render_teacher,
)

__all__ = ['FRACTIONS', 'RENDER_TEACHER_ARCH', 'RENDER_TEACHER_MODEL', 'SEEDS',
           'RenderTeacherError', 'TransferError', 'check_goal', 'create_downstream_root',
           'format_table', 'load_export', 'load_object_split', 'run_transfer',
           'teacher_config', 'train_render_teacher', 'write_table']

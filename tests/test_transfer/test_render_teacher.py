"""The render teacher: trained on labelled renders, saved as an open_clip file, loaded by
CLIPTeacher through `pretrained=` with every key, and keyed by the file's digest."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from concept_distill.models.distill import CLIPTeacher
from concept_distill.transfer.render_teacher import (
    RENDER_TEACHER_ARCH,
    RENDER_TEACHER_MODEL,
    RenderTeacherError,
    label_of_view_dir,
    teacher_config,
    train_render_teacher,
)

CLASSES = ('chair', 'table')


@pytest.fixture(scope='module')
def teacher_file(synthetic_objects_root, tmp_path_factory) -> tuple:
    """A render teacher trained for 3 steps on 2 classes x 3 objects x 2 views."""
    root = synthetic_objects_root(num_per_class=3, test_per_class=1, classes=CLASSES,
                                  layouts=('shapenet55',), num_points=2000, num_views=2,
                                  image_size=48)
    out = tmp_path_factory.mktemp('render_teacher') / 'teacher.pt'
    torch.set_num_threads(1)
    summary = train_render_teacher(root / 'ShapeNet55', out, steps=3, batch_size=4,
                                   log_every=0)
    return out, summary, root


def test_summary_and_sidecar(teacher_file) -> None:
    out, summary, _ = teacher_file
    side = json.loads(out.with_name(out.name + '.json').read_text())
    assert side['classes'] == list(CLASSES)
    assert side['num_train_views'] == 2 * 2 * 2 and side['num_test_views'] == 2 * 2
    assert side['teacher']['model_name'] == RENDER_TEACHER_MODEL
    assert side['teacher']['arch_overrides'] == json.loads(json.dumps(RENDER_TEACHER_ARCH))
    assert 0.0 <= summary['train_view_acc'] <= 1.0 and summary['steps'] == 3


def test_file_holds_every_key_of_the_open_clip_model(teacher_file) -> None:
    out, _, _ = teacher_file
    saved = torch.load(out, map_location='cpu', weights_only=True)
    cfg = open_clip.get_model_config(RENDER_TEACHER_MODEL)
    cfg.update(RENDER_TEACHER_ARCH)
    model = open_clip.create_model(RENDER_TEACHER_MODEL, pretrained=None, **cfg)
    result = model.load_state_dict(saved, strict=False)
    assert not result.missing_keys and not result.unexpected_keys


def test_loads_through_pretrained_and_differs_from_a_random_teacher(teacher_file) -> None:
    out, _, root = teacher_file
    cfg = teacher_config(out)
    assert cfg['pretrained'] == str(out)
    cfg.pop('type')
    trained = CLIPTeacher(**cfg)
    key = trained.cache_key()
    assert key['weights_digest'] == hashlib.sha256(out.read_bytes()).hexdigest()
    # The loaded tower is the saved one, tensor for tensor.
    saved = torch.load(out, map_location='cpu', weights_only=True)
    for name, value in trained.visual.state_dict().items():
        assert torch.equal(value, saved[f'visual.{name}']), name
    with pytest.warns(UserWarning, match='RANDOMLY'):
        random = CLIPTeacher(**dict(cfg, pretrained=None))
    assert random.cache_key()['weights_digest'] != key['weights_digest']
    view = np.array(Image.open(next((root / 'ShapeNet55' / 'shapenet_views').glob('*/00.png'))))
    img = torch.from_numpy(view).permute(2, 0, 1)[None].contiguous()
    a, b = trained(img)['global'], random(img)['global']
    assert a.shape == b.shape == (1, RENDER_TEACHER_ARCH['embed_dim'])
    assert not torch.allclose(a, b, atol=1e-3)


def test_bad_inputs_name_the_file(tmp_path, teacher_file) -> None:
    with pytest.raises(RenderTeacherError, match='split list'):
        train_render_teacher(tmp_path, tmp_path / 't.pt', steps=1)
    out, _, root = teacher_file
    with pytest.raises(FileExistsError, match='refusing'):
        train_render_teacher(root / 'ShapeNet55', out, steps=1)
    with pytest.raises(RenderTeacherError, match='sidecar|missing'):
        teacher_config(tmp_path / 'none.pt')
    with pytest.raises(RenderTeacherError, match='synthetic'):
        label_of_view_dir('02691156-abc')
    assert label_of_view_dir('90000003-bed_0001') == 3

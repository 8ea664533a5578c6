"""The transfer benchmark's downstream root: made under the converters' output guard (reused
with the same arguments, never mixed with other objects), and read back split by split."""
from __future__ import annotations

import pytest

from concept_distill.datasets.converters.output_guard import MANIFEST, OutputExistsError
from concept_distill.transfer.object_data import (
    MODELNET_DIR,
    create_downstream_root,
    load_object_split,
)
from concept_distill.transfer.pipeline import downstream_seed

ARGS = dict(classes=('chair', 'table'), num_per_class=3, test_per_class=1, seed=7,
            num_views=1, image_size=32)


def test_downstream_root_is_reused_refused_or_rebuilt_never_mixed(tmp_path) -> None:
    root = create_downstream_root(tmp_path / 'ds', **ARGS)
    train = load_object_split(root / MODELNET_DIR, 'train')
    test = load_object_split(root / MODELNET_DIR, 'test')
    assert (len(train.labels), len(test.labels)) == (4, 2)
    assert set(train.shape_ids).isdisjoint(test.shape_ids)
    assert downstream_seed(root) == 7

    listing = root / MODELNET_DIR / 'modelnet40_train.txt'
    before = listing.stat().st_mtime_ns
    create_downstream_root(tmp_path / 'ds', **ARGS)  # same arguments: reused as it is
    assert listing.stat().st_mtime_ns == before

    with pytest.raises(OutputExistsError, match='seed'):  # other instances: refused
        create_downstream_root(tmp_path / 'ds', **dict(ARGS, seed=8))
    assert downstream_seed(root) == 7

    (root / MANIFEST).unlink()  # as a killed run leaves it: files, no record
    with pytest.raises(OutputExistsError, match='interrupted'):
        create_downstream_root(tmp_path / 'ds', **ARGS)
    assert downstream_seed(root) is None


def test_a_folder_of_other_files_is_not_a_downstream_root(tmp_path) -> None:
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'notes.txt').write_text('keep me')
    with pytest.raises(OutputExistsError, match='not empty'):
        create_downstream_root(tmp_path / 'mine', **ARGS)
    assert (tmp_path / 'mine' / 'notes.txt').read_text() == 'keep me'

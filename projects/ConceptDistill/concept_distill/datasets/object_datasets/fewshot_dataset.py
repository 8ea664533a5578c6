"""A few-shot fold of an object dataset: its support (train) or query (test) objects."""
from __future__ import annotations

from mmdet3d.registry import DATASETS
from mmengine.dataset import Compose

from concept_distill.evaluation.fewshot import sample_fewshot_fold


@DATASETS.register_module()
class FewShotObjectDataset:
    """The `split` ('support' or 'query') objects of one N-way K-shot fold.

    Builds `train_dataset` and `test_dataset` (object dataset configs, their own pipelines
    ignored) to draw the fold from their labels (``evaluation/fewshot.py``), relabels the
    drawn classes 0..n_way-1 and runs `pipeline` on the chosen objects. `metainfo['classes']`
    are the drawn classes' names in their new order.
    """

    def __init__(self, train_dataset: dict, test_dataset: dict, split: str = 'support',
                 n_way: int = 5, k_shot: int = 10, fold: int = 0, seed: int = 0,
                 n_query: int = 20, pipeline: list | None = None,
                 test_mode: bool = False) -> None:
        if split not in ('support', 'query'):
            raise ValueError(f"split must be 'support' or 'query', got {split!r}")
        train = DATASETS.build({**train_dataset, 'pipeline': []})
        test = DATASETS.build({**test_dataset, 'pipeline': []})
        self.fold = sample_fewshot_fold(train.labels(), test.labels(), n_way, k_shot, fold, seed,
                                        n_query)
        self.source = train if split == 'support' else test
        self.indices = self.fold.support if split == 'support' else self.fold.query
        names = self.source.metainfo.get('classes') or ()
        self._metainfo = dict(self.source.metainfo,
                              classes=tuple(names[c] if c < len(names) else str(c)
                                            for c in self.fold.classes),
                              fewshot=dict(n_way=n_way, k_shot=k_shot, fold=fold, seed=seed,
                                           split=split, original_classes=self.fold.classes))
        self.pipeline = Compose(pipeline or [])
        self.test_mode = test_mode

    @property
    def metainfo(self) -> dict:
        """Meta information (classes in the fold's order and the fold's settings)."""
        return dict(self._metainfo)

    def __len__(self) -> int:
        return len(self.indices)

    def get_data_info(self, idx: int) -> dict:
        """The idx-th object of the fold, relabelled, before the pipeline."""
        info = self.source.get_data_info(self.indices[idx])
        info['gt_label'] = self.fold.remap(info['gt_label'])
        info['sample_idx'] = idx
        return info

    def __getitem__(self, idx: int) -> dict:
        return self.pipeline(self.get_data_info(idx))

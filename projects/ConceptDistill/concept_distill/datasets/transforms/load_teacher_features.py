"""Reading a frame's teacher embeddings from the teacher-feature cache."""
from __future__ import annotations

import logging

from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmengine.logging import print_log

from concept_distill.datasets.frustum_pairing import PairedDataError
from concept_distill.datasets.teacher_cache import TeacherFeatureCache
from concept_distill.models.distill.clip_teacher import teacher_cache_key


def preprocessing_key(preprocessing: dict | None,
                      decode_size: tuple[int, int] | None = None) -> dict | None:
    """Comparable form of a `ResizeCropForTeacher` config (type, size, mode, crop), and of the
    JPEG draft size `LoadPairedImage(decode_size=...)` decoded the frames at (when given: a
    reduced-size decode gives other pixels than a full decode and a resize)."""
    if preprocessing is None:
        return None
    p = dict(preprocessing)
    key = dict(type=p.get('type', 'ResizeCropForTeacher'), size=list(p.get('size', (224, 224))),
               mode=p.get('mode', 'squash'), crop=p.get('crop', 'center'))
    if decode_size is not None:
        key['decode_size'] = [int(v) for v in decode_size]
    return key


@TRANSFORMS.register_module()
class LoadTeacherFeatures(BaseTransform):
    """Put `teacher_global` (D,) and optionally `teacher_tokens` (T, D) of `frame_id` into the
    results, from a cache written by tools/extract_teacher_features.py.

    The cache is checked once, when the transform is built: its files against its index
    (sizes, shapes), its key against `teacher` (a CLIPTeacher config; its key is read from the
    config and the weights file's digest, no network is built), against `expected_key` (any
    subset of the key's fields), and against
    `preprocessing` (the pipeline's `ResizeCropForTeacher` config). A mismatch raises
    `TeacherCacheError` naming the cache directory and the differing field or file. Before
    training, `FrozenTeacherHook` calls `check_dataset` to check that the cache was built
    from the dataset's images.

    Args:
        cache_dir: the cache directory.
        tokens: also load the cached token set.
        teacher: teacher config to check the cache against (optional).
        expected_key: teacher key fields to check (optional).
        preprocessing: the image preprocessing the cache must have used (optional).
        verify_images: how `check_dataset` compares each frame's image with the one the
            cache was built from: 'quick' (file size + first and last 4 KiB), 'full' (all
            bytes) or 'none'.
    """

    def __init__(self, cache_dir: str, tokens: bool = False, teacher: dict | None = None,
                 expected_key: dict | None = None, preprocessing: dict | None = None,
                 verify_images: str = 'quick') -> None:
        if verify_images not in ('quick', 'full', 'none'):
            raise ValueError(f"verify_images must be 'quick', 'full' or 'none', not "
                             f'{verify_images!r}')
        self.cache = TeacherFeatureCache(cache_dir)
        self.verify_images = verify_images
        self.tokens = tokens
        self._size = tuple(preprocessing_key(preprocessing)['size']) if preprocessing else None
        self._warned = False
        self.cache.check_complete()
        if teacher is not None:
            # The key from the config and the weights file's digest: no network is built.
            self.cache.check_key(dict(teacher=teacher_cache_key(teacher)))
        if expected_key is not None:
            self.cache.check_key(dict(teacher=expected_key))
        if preprocessing is not None:
            self.cache.check_key(dict(preprocessing=preprocessing_key(preprocessing)))
        if tokens and not self.cache.index.get('tokens'):
            self.cache.get(self.cache.index['frame_ids'][0], tokens=True)  # raises, clearly

    def check_dataset(self, dataset) -> dict:
        """Check that the cache was built from `dataset`'s frames and images
        (`TeacherFeatureCache.check_frames`); returns what was checked."""
        if self.verify_images == 'none':
            return dict(frames=0, mode='none')
        if not getattr(dataset, '_fully_initialized', True):
            dataset.full_init()
        infos = (dataset.get_data_info(i) for i in range(len(dataset)))
        return self.cache.check_frames(((info['frame_id'], info['img_path']) for info in infos),
                                       full=self.verify_images == 'full')

    def transform(self, results: dict) -> dict:
        frame_id = results['frame_id']
        if not self.cache.is_valid(frame_id):
            raise PairedDataError(f'frame {frame_id} has no teacher features in '
                                  f'{self.cache.cache_dir} ({self.cache.invalid_reason(frame_id)}'
                                  '); run tools/extract_teacher_features.py again to retry it',
                                  results.get('img_path'), 'no_cached_features')
        if self._size and tuple(results['img_shape'][:2]) != self._size and not self._warned:
            # Not fatal for global targets, but token targets need pixel_uv in the teacher's
            # image: ResizeCropForTeacher (it also works without pixels) belongs before this.
            print_log(f'LoadTeacherFeatures: img_shape {tuple(results["img_shape"][:2])} is not '
                      f'the cached preprocessing size {self._size}; pixel_uv are not in teacher-'
                      'image pixels (add ResizeCropForTeacher before FrustumPointPairing)',
                      logger='current', level=logging.WARNING)
            self._warned = True
        g, t = self.cache.get(frame_id, self.tokens)
        results['teacher_global'] = g
        if t is not None:
            results['teacher_tokens'] = t
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(cache_dir={str(self.cache.cache_dir)!r}, '
                f'tokens={self.tokens}, verify_images={self.verify_images!r})')

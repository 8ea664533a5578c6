"""Object pre-training pairs: a ShapeNet-55 point cloud and one rendered view of the shape.

Layout (``data_root``, e.g. ``data/ShapeNet55-34/``):

    shapenet_pc/<synset>-<model>.npy        (8192, 3) float32, as Point-BERT distributes it
    ShapeNet-55/{train,test}.txt            one ``<synset>-<model>.npy`` per line
    shapenet_views/<synset>-<model>/        rendered views of that shape:
        NN.png [NN_depth.png]               RGB view (+ optional uint16 depth, 1/depth_scale)
        cameras.json                        {"depth_scale": 1000.0, "points": "<npy, optional>",
                                             "views": [{"file": "00.png",
                                                        "depth_file": "00_depth.png" (optional),
                                                        "world2cam": 4x4, "cam2img": 3x3|4x4},
                                                       ...]}

``world`` is the frame of the stored points, so ``cam2img @ world2cam`` takes a point of the
``.npy`` to its pixel (OpenCV: x right, y down, z forward; pixel centres at integers).
``tools/render_object_views.py`` writes this layout from meshes; the synthetic objects
(``tools/create_object_data.py``) ship it.
"""
from __future__ import annotations

import json
import logging
import os.path as osp
import zlib
from collections import Counter

import numpy as np
from mmdet3d.registry import DATASETS
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from concept_distill.datasets.frustum_pairing import PairedDataError, as_mat4
from concept_distill.datasets.object_datasets.base import ObjectDataError, read_lines, require_file

CAMERAS_FILE = 'cameras.json'
VIEW_SAMPLING = ('random', 'all')


def read_cameras(path: str) -> dict:
    """Parse and check a shape's ``cameras.json``; views get 4x4 float64 matrices."""
    require_file(path, 'view camera file')
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise ObjectDataError(f'{path}: not readable as JSON ({e})', path) from e
    views = meta.get('views') if isinstance(meta, dict) else None
    if not isinstance(views, list) or not views:
        raise ObjectDataError(f"{path}: needs a non-empty list 'views'", path)
    out = []
    for k, v in enumerate(views):
        where = f'{path}: views[{k}]'
        if not isinstance(v, dict) or not isinstance(v.get('file'), str):
            raise ObjectDataError(f"{where} needs a 'file' (image name)", path)
        try:
            world2cam, cam2img = as_mat4(v['world2cam']), as_mat4(v['cam2img'])
        except (KeyError, TypeError, ValueError) as e:
            raise ObjectDataError(f"{where}: 'world2cam' (4x4) and 'cam2img' (3x3 or 4x4) "
                                  f'are required ({e})', path) from e
        if not (np.isfinite(world2cam).all() and np.isfinite(cam2img).all()):
            raise ObjectDataError(f'{where}: non-finite camera matrix', path)
        out.append(dict(v, world2cam=world2cam, cam2img=cam2img))
    scale = meta.get('depth_scale', 1000.0)
    if not isinstance(scale, (int, float)) or not scale > 0:
        raise ObjectDataError(f"{path}: 'depth_scale' must be a positive number, got {scale!r}",
                              path)
    return dict(meta, views=out, depth_scale=float(scale))


@DATASETS.register_module()
class ShapeNet55ViewPairDataset(BaseDataset):
    """(points of a ShapeNet-55 shape, one rendered view of it) pairs for pre-training.

    Items carry what the scene pairs (`PairedFrameDataset`) carry, so the paired pipeline and
    the distiller take them unchanged: `lidar_path` (the shape's ``.npy``, read by
    `LoadObjectPoints`), `img_path`, `depth_path` (when the view has one), `lidar2img` =
    `lidar2depth` = cam2img @ world2cam, `scene_id` (``<synset>-<model>``) and `frame_id`
    (``<synset>-<model>/<view file stem>``, the teacher-cache id of the view).

    Args:
        data_root: the root holding ``shapenet_pc``, ``ShapeNet-55`` and ``shapenet_views``.
        split: 'train' or 'test' (the list ``ShapeNet-55/<split>.txt``).
        data_prefix: folders of the points (`pts`), the view folders (`views`) and the split
            lists (`split`) relative to data_root.
        view_sampling: 'random' (one item per shape; each fetch draws one of its views, a
            fixed one per item in test mode) or 'all' (one item per (shape, view)). None:
            'all' in test mode (validation and teacher extraction see every view), else
            'random'.
        max_views: use only the first `max_views` views of each shape.
        seed: seed of the fixed views of 'random' sampling and of the pipeline's random
            draws in test mode (two validation passes see the same points).
        skip_bad_frames: replace a view whose files are missing/corrupt (`PairedDataError`)
            by another (the next item in test mode, a random one in training), counted in
            `skip_counts` and logged; False raises the error naming the file.

    A missing split list, view folder or ``cameras.json`` and a malformed camera raise
    `ObjectDataError` naming the file when the dataset is built.
    """

    METAINFO = dict(dataset='shapenet55_views')

    def __init__(self, data_root: str, split: str = 'train', data_prefix: dict | None = None,
                 view_sampling: str | None = None, max_views: int | None = None,
                 seed: int = 0, skip_bad_frames: bool = True, max_refetch: int = 100,
                 test_mode: bool = False, **kwargs) -> None:
        if split not in ('train', 'test'):
            raise ValueError(f"ShapeNet-55 split must be 'train' or 'test', got {split!r}")
        if view_sampling is None:
            view_sampling = 'all' if test_mode else 'random'
        if view_sampling not in VIEW_SAMPLING:
            raise ValueError(f'view_sampling must be one of {VIEW_SAMPLING} or None, got '
                             f'{view_sampling!r}')
        if max_views is not None and max_views < 1:
            raise ValueError(f'max_views must be >= 1 or None, got {max_views}')
        self.split, self.view_sampling = split, view_sampling
        self.max_views, self.seed = max_views, seed
        self.skip_bad_frames = skip_bad_frames
        self.skip_counts: Counter = Counter()
        self._frame_list: list[tuple[int, int]] | None = None
        prefix = dict(pts='shapenet_pc', views='shapenet_views', split='ShapeNet-55')
        prefix.update(data_prefix or {})
        super().__init__(data_root=data_root, ann_file='', data_prefix=prefix,
                         test_mode=test_mode, max_refetch=max_refetch, **kwargs)

    def load_data_list(self) -> list[dict]:
        """The split's shapes and their views (``cameras.json`` of every shape is read)."""
        list_file = osp.join(self.data_prefix['split'], f'{self.split}.txt')
        shapes = []
        for line_no, line in enumerate(read_lines(list_file, 'ShapeNet-55 split list'), 1):
            name = osp.basename(line)
            key, ext = osp.splitext(name)
            if ext != '.npy':
                raise ObjectDataError(f'{list_file}:{line_no}: expected '
                                      f"'<synset>-<model>.npy', got {line!r}", list_file)
            shapes.append(self._shape(key))
        if not shapes:
            raise ObjectDataError(f'{list_file}: lists no shape', list_file)
        if self.view_sampling == 'random':
            return shapes
        return [dict(shape, views=[v]) for shape in shapes for v in shape['views']]

    def _shape(self, key: str) -> dict:
        view_dir = osp.join(self.data_prefix['views'], key)
        cam_file = osp.join(view_dir, CAMERAS_FILE)
        if not osp.isdir(view_dir):
            raise ObjectDataError(f'no rendered views for shape {key}: {view_dir} is missing '
                                  '(render them with tools/render_object_views.py)', view_dir)
        meta = read_cameras(cam_file)
        points = meta.get('points')
        if points is not None and osp.splitext(osp.basename(str(points)))[0] != key:
            raise ObjectDataError(f"{cam_file}: its 'points' ({points}) are not shape {key}'s",
                                  cam_file)
        views = []
        for v in meta['views'][:self.max_views]:
            proj = v['cam2img'] @ v['world2cam']
            view = dict(frame_id=f'{key}/{osp.splitext(v["file"])[0]}',
                        img_path=osp.join(view_dir, v['file']), lidar2img=proj)
            if v.get('depth_file'):
                view.update(depth_path=osp.join(view_dir, v['depth_file']), lidar2depth=proj,
                            depth_shift=meta['depth_scale'])
            views.append(view)
        lidar_path = osp.join(self.data_prefix['pts'], f'{key}.npy')
        return dict(scene_id=key, shape_id=key, lidar_path=lidar_path,
                    lidar_points=dict(lidar_path=lidar_path, num_pts_feats=3),
                    axis_align_matrix=np.eye(4), views=views)

    def _stored(self, idx: int) -> dict:
        """The idx-th item as stored (all its views), before a view is chosen."""
        return super().get_data_info(idx)

    def get_data_info(self, idx: int) -> dict:
        """The idx-th shape with one of its views (see `view_sampling`)."""
        info = self._stored(idx)
        n = len(info['views'])
        if n == 1:
            k = 0
        elif self.test_mode:
            k = int(np.random.default_rng([self.seed, idx]).integers(n))
        else:
            k = int(np.random.randint(n))
        return _with_view(info, k)

    def _frames(self) -> list[tuple[int, int]]:
        if self._frame_list is None:
            self._frame_list = [(i, k) for i in range(len(self))
                                for k in range(len(self._stored(i)['views']))]
        return self._frame_list

    @property
    def num_frames(self) -> int:
        """How many (shape, view) pairs the dataset can yield (its teacher-cache rows)."""
        return len(self._frames())

    def get_frame_info(self, i: int) -> dict:
        """The i-th (shape, view) pair, whatever `view_sampling` draws (teacher extraction
        caches every view a training run may draw)."""
        idx, k = self._frames()[i]
        return _with_view(self._stored(idx), k)

    def frame_ids(self) -> list[str]:
        """Every (shape, view) id the dataset can yield."""
        return [self.get_frame_info(i)['frame_id'] for i in range(self.num_frames)]


    # ------------------------------------------------------------------ fetching
    def _prepare(self, idx: int) -> dict | None:
        """The pipeline on item idx; in test mode under a numpy state seeded by its view."""
        info = self.get_data_info(idx)
        if not self.test_mode:
            return self.pipeline(info)
        state = np.random.get_state()
        np.random.seed(zlib.crc32(f'{self.seed}:{info["frame_id"]}'.encode()))
        try:
            return self.pipeline(info)
        finally:
            np.random.set_state(state)

    def __getitem__(self, idx: int) -> dict:
        """The idx-th pair; an unreadable one is counted, logged and replaced."""
        if not self._fully_initialized:
            self.full_init()
        for _ in range(self.max_refetch + 1):
            try:
                data = self._prepare(idx)
            except PairedDataError as err:
                if not self.skip_bad_frames:
                    raise
                self.skip_counts[err.reason] += 1
                print_log(f'skipping view: {err} [{err.reason}: {self.skip_counts[err.reason]} '
                          'so far]', logger='current', level=logging.WARNING)
                data = None
            if data is not None:
                return data
            idx = (idx + 1) % len(self) if self.test_mode else self._rand_another()
        raise PairedDataError(f'no readable view after {self.max_refetch + 1} tries under '
                              f'{self.data_root}; skips so far: {dict(self.skip_counts)}',
                              self.data_root, 'no_valid_frame')


def _with_view(info: dict, k: int) -> dict:
    """A stored item with its k-th view's keys in place of the view list."""
    views = info.pop('views')
    info.update(views[k])
    info['num_views'] = len(views)
    return info

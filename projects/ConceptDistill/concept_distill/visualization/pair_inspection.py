"""Looking at one pair: the frame's image, the points it sees, and how well their colours agree."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from concept_distill.datasets.frustum_pairing import color_agreement
from concept_distill.datasets.paired_frame_dataset import PairedFrameDataset


def inspection_pipeline(load_dim: int = 6, occlusion_tol: float = 0.1,
                        depth_range: tuple[float, float] = (0.1, 10.0)) -> list[dict]:
    """Full-resolution pairing that keeps every visible point and its colour."""
    return [
        dict(type='LoadScenePoints', coord_type='DEPTH', shift_height=False, load_dim=load_dim,
             use_dim=list(range(6))),
        dict(type='LoadPairedImage', with_pixels=True, with_depth=True),
        dict(type='FrustumPointPairing', num_points=None, depth_range=depth_range,
             occlusion_tol=occlusion_tol, min_points=1),
    ]


def load_pair(data_root: str, ann_file: str, index: int = 0, data_prefix: dict | None = None,
              pixel_origin: float | None = None, decode_size: tuple[int, int] | None = None,
              **pipeline_kwargs) -> dict:
    """dict(img (H, W, 3) uint8, uv (N, 2), xyz (N, 3), rgb (N, 3), depth (N,), frame_id,
    img_path, color_error (mean abs RGB difference 0-1), shuffled_error (same, with the
    points' colours permuted: the no-correspondence baseline)).

    `pixel_origin` overrides the dataset's intrinsics convention; `decode_size` decodes
    JPEGs at a reduced scale (as training does)."""
    pipeline = inspection_pipeline(**pipeline_kwargs)
    pipeline[1]['decode_size'] = decode_size
    ds = PairedFrameDataset(data_root=data_root, ann_file=ann_file, data_prefix=data_prefix,
                            pipeline=pipeline, test_mode=True, skip_bad_frames=False,
                            serialize_data=False, pixel_origin=pixel_origin)
    results = ds.pipeline(ds.get_data_info(index))
    pts = results['points']
    cols = pts.attribute_dims['pixel_uv']
    uv = pts.tensor[:, cols].numpy().astype(np.float64)
    xyz = pts.coord.numpy().astype(np.float64)
    rgb = pts.tensor[:, 3:6].numpy().astype(np.float64)
    proj = np.asarray(results['lidar2img'])
    depth = xyz @ proj[2, :3] + proj[2, 3]
    rng = np.random.default_rng(0)
    return dict(img=results['img'], uv=uv, xyz=xyz, rgb=rgb, depth=depth,
                frame_id=results['frame_id'], img_path=results['img_path'],
                color_error=color_agreement(rgb, results['img'], uv),
                shuffled_error=color_agreement(rgb[rng.permutation(len(rgb))],
                                               results['img'], uv))


def save_pair_png(pair: dict, path: str | Path, max_points: int = 20000) -> Path:
    """Image with the projected points coloured by depth (left) and the points painted in
    their own colours at their pixels (right)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    img, uv = pair['img'], pair['uv']
    rgb = pair['rgb'] / (255.0 if pair['rgb'].max() > 1.0 else 1.0)
    pick = np.random.default_rng(0).permutation(len(uv))[:max_points]
    h, w = img.shape[:2]
    fig, axes = plt.subplots(1, 2, figsize=(12, 12 * h / w / 2 + 0.6))
    axes[0].imshow(img)
    axes[0].scatter(uv[pick, 0], uv[pick, 1], c=pair['depth'][pick], s=1, cmap='turbo')
    axes[0].set_title(f"{pair['frame_id']}: {len(uv)} points, coloured by depth")
    canvas = np.full_like(img, 255)
    axes[1].imshow(canvas)
    axes[1].scatter(uv[pick, 0], uv[pick, 1], c=np.clip(rgb[pick], 0, 1), s=2)
    axes[1].set_title(f"point colours: mean |RGB error| {pair['color_error']:.3f} "
                      f"(shuffled {pair['shuffled_error']:.3f})")
    for ax in axes:
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.axis('off')
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

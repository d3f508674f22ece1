"""Demo data: synthetic rooms, prepared through the real preparation path."""
import os
import os.path as osp
import shutil
import sys

__all__ = [
    'prepare_demo_data', 'demo_data_ready', 'check_demo_target',
    'prepare_configured_demo'
]


def _same_folder(a, b):
    return osp.realpath(osp.abspath(a)) == osp.realpath(osp.abspath(b))


def check_demo_target(data_root, demo_root, split='train'):
    """Refuse to generate demo rooms anywhere but the demo's own folder.

    A data root named on the command line or in a config that derives from
    the demo is the user's data: when its ``split`` is not prepared, raise
    the one-line :class:`DataPreparationError` that says how to prepare it,
    instead of filling the folder with synthetic rooms.

    Args:
        data_root: the dataset's data root.
        demo_root: the demo's own data folder (``auto_prepare``'s
            ``demo_root``); None: ``data_root`` is trusted to be it.
        split: the split the dataset reads.
    """
    from .errors import DataPreparationError
    if demo_root is None or _same_folder(data_root, demo_root) \
            or osp.isdir(osp.join(data_root, split)):
        return
    raise DataPreparationError(
        f'DBBD demo: data_root {data_root} has no prepared {split} split, '
        'and the demo generates synthetic rooms only into its own folder '
        f'{demo_root}, never into a folder you name; prepare your data '
        f'with `python tools/create_data.py --src <your data> --out '
        f'{data_root}`, or drop the data_root override to run the demo')


def demo_data_ready(data_root, num_train, num_val):
    from .scene_io import list_prepared
    return (len(list_prepared(osp.join(data_root, 'train'))) >= num_train
            and len(list_prepared(osp.join(data_root, 'val'))) >= num_val)


def prepare_demo_data(data_root, num_train=4, num_val=2, num_points=20000,
                      seed=0, workers=None, progress=True, demo_root=None,
                      **tree_options):
    """Generate synthetic rooms and prepare them into ``data_root``.

    The rooms are written in Pointcept's input layout under
    ``<data_root>/source`` and go through :func:`prepare_dataset`, exactly
    like downloaded ScanNet would. A file lock makes concurrent callers
    (train and val datasets, several ranks) prepare once. Does nothing when
    the data is already there.

    Args:
        demo_root: the demo's own folder: any other ``data_root`` is the
            user's data, never written to (:func:`check_demo_target`).
            None (a direct call naming its folder): ``data_root``.
        tree_options: ``branching``, ``max_depth``, ``min_points_to_split``,
            ``voxel_size`` for :func:`prepare_dataset`.
    """
    import fcntl

    from .prepare import format_summary, prepare_dataset
    from .synthetic import write_synthetic_dataset

    check_demo_target(data_root, demo_root)
    if demo_root is not None and not _same_folder(data_root, demo_root):
        return  # the user's prepared data, used as it is, never added to
    os.makedirs(data_root, exist_ok=True)
    with open(osp.join(data_root, '.prepare.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if demo_data_ready(data_root, num_train, num_val):
            return
        print(f'DBBD demo: preparing {num_train} train + {num_val} val '
              f'synthetic rooms of {num_points} points into '
              f'{osp.abspath(data_root)} (one-off)', file=sys.stderr,
              flush=True)
        src = osp.join(data_root, 'source')
        if osp.isdir(src):
            shutil.rmtree(src)
        write_synthetic_dataset(src, num_train=num_train, num_val=num_val,
                                num_points=num_points, seed=seed,
                                layout='pointcept')
        summary = prepare_dataset(src, data_root, layout='pointcept',
                                  workers=workers, seed=seed,
                                  progress=progress, **tree_options)
        shutil.rmtree(src, ignore_errors=True)
        print(format_summary(summary), file=sys.stderr, flush=True)
        if summary['failed']:
            raise RuntimeError(
                f'DBBD demo: preparing {data_root} failed for '
                f'{len(summary["failed"])} scene(s): '
                f'{summary["failed"][0]["error"]}')


def prepare_configured_demo(cfg):
    """Run the one-off preparation of every dataset of ``cfg``'s training
    and validation loaders that has ``auto_prepare`` (the demo) now,
    printing its progress; nothing when the data is there.

    ``tools/train.py`` calls it before the Runner is built, so the
    progress comes before the Runner's environment, config and hook dump,
    and a failure leaves nothing in the work dir. Only into the demo's own
    folder (:func:`check_demo_target`).
    """
    for loader in ('train_dataloader', 'val_dataloader'):
        ds = (cfg.get(loader) or {}).get('dataset') or {}
        auto = ds.get('auto_prepare')
        if auto is not None:
            prepare_demo_data(str(ds.get('data_root')), **auto)

"""Build fastMRI-layout single-coil datasets from real magnitude MRI scans.

Sources (all installable packages, nothing downloaded at run time):

=========  ==========================================================  ==============  =========
name       file                                                          licence         split
=========  ==========================================================  ==============  =========
ch2        Debian ``mricron-data``: ``/usr/share/mricron/templates/ch2.nii.gz``  BSD-3-Clause    train/val
           (Colin Holmes T1 head, 181x217x181 at 1 mm; an *average of 27 scans of one
           person*, so cleaner than a single scan)
mni152     nilearn's bundled MNI ICBM152 2009a T1 template (skull-stripped,       MNI notice      train/val
           197x233x189 at 1 mm; an average of 152 subjects)                   (permissive)
itk_t1     Debian ``insighttoolkit5-examples``: ``KmeansTest_T1UCharRaw.nii.gz``  Apache-2.0      test
           (another subject, single T1 scan, 128x128x62 at 2 x 2 x 3 mm)
=========  ==========================================================  ==============  =========

Protocol (documented defaults in :class:`backend.config.PrepareConfig`):

1. Reorient to RAS and take *coronal* slices (the ITK volume's axial slices are only
   128x62 at 3 mm, its coronal ones 128x128 at 2 mm; all sources use the same orientation).
   Slices are displayed radiologically: superior up, the patient's right on the image's left.
2. Skip near-empty slices: keep a slice when at least ``min_foreground`` (15 %) of its *native*
   area is above ``foreground_threshold`` (10 %) of the volume's 99th percentile.
3. Resample in-plane to ``spacing_mm`` (1 mm; cubic spline, only the ITK volume changes),
   then centre pad/crop to the square grid ``size`` (224).
4. Magnitude -> zero-phase complex image -> centred orthonormal FFT = simulated fully sampled
   single-coil k-space (the paper's brain protocol). ``reconstruction_esc`` = the magnitude.
5. Contiguous slabs of ``slab`` slices, one h5 file each. Splits are by subject and slab, never
   slices of one slab across splits: ``itk_t1`` is the test set; of the training sources every
   ``val_every``-th slab is validation; the middle ch2 slab is held out as the shipped sample
   (neither train nor val).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Generator

import numpy as np

from .config import PrepareConfig
from .errors import InputError
from .files import atomic_h5, atomic_path, write_json
from .recon import Progress
from .transforms import magnitude_to_kspace, pad_or_crop

CH2_PATH = "/usr/share/mricron/templates/ch2.nii.gz"
ITK_T1_PATH = "/usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz"


@dataclass(frozen=True)
class Source:
    """A real scan: how to load it, its licence, and its role in the split."""

    name: str
    description: str
    licence: str
    role: str  # "trainval" or "test"
    debian_package: str | None
    load: Callable[[], "object"]  # -> nibabel image


def _load_path(path: str, package: str):
    def load():
        import nibabel as nib

        if not os.path.exists(path):
            raise InputError(path, f"missing: install the Debian package '{package}'")
        return nib.load(path)

    return load


def _load_mni152():
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=1)


SOURCES: dict[str, Source] = {
    "ch2": Source(
        "ch2",
        "Colin Holmes 'ch2' T1 head template (average of 27 scans of one person), 1 mm",
        "BSD-3-Clause (MRIcron, Chris Rorden; Debian mricron-data)",
        "trainval",
        "mricron-data",
        _load_path(CH2_PATH, "mricron-data"),
    ),
    "mni152": Source(
        "mni152",
        "MNI ICBM152 2009a symmetric T1 template, skull-stripped (152 subjects), 1 mm, from nilearn",
        "MNI ICBM152 copyright notice (use and redistribution permitted with the notice); "
        "nilearn BSD-3-Clause",
        "trainval",
        None,
        _load_mni152,
    ),
    "itk_t1": Source(
        "itk_t1",
        "ITK example T1 head scan 'KmeansTest_T1UCharRaw' (single subject), 2 x 2 x 3 mm",
        "Apache-2.0 (Insight Toolkit examples; Debian insighttoolkit5-examples)",
        "test",
        "insighttoolkit5-examples",
        _load_path(ITK_T1_PATH, "insighttoolkit5-examples"),
    ),
}


def coronal_slices(image) -> tuple[np.ndarray, tuple[float, float]]:
    """Coronal slices ``(n, S-I rows, R-L cols)`` of a nibabel image and their pixel size (mm).

    Rows run superior -> inferior; columns run from the patient's right to left (radiological).
    """
    import nibabel as nib

    canon = nib.as_closest_canonical(image)  # RAS+: x -> right, y -> anterior, z -> superior
    data = np.asarray(canon.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(None, f"expected a 3-D volume, got shape {data.shape}")
    zx, _, zz = (float(z) for z in canon.header.get_zooms()[:3])
    # (x, y, z) -> (y, z, x); flip z so superior is row 0; flip x so the patient's right is col 0
    vol = np.transpose(data, (1, 2, 0))[:, ::-1, ::-1]
    return np.ascontiguousarray(vol), (zz, zx)


def foreground_fraction(slices: np.ndarray, threshold: float) -> np.ndarray:
    """Per slice, the fraction of native pixels above ``threshold`` x the volume's p99."""
    level = threshold * np.percentile(slices, 99)
    return (slices > level).mean(axis=(1, 2))


def resample(image: np.ndarray, spacing: tuple[float, float], target_mm: float) -> np.ndarray:
    """Cubic-spline resampling of one slice from ``spacing`` to ``target_mm`` pixels."""
    from scipy.ndimage import zoom

    factors = (spacing[0] / target_mm, spacing[1] / target_mm)
    if np.allclose(factors, 1.0):
        return image
    return np.clip(zoom(image, factors, order=3), 0, None).astype(np.float32)


def prepared_slices(source: Source, config: PrepareConfig) -> tuple[np.ndarray, np.ndarray]:
    """The kept slices of a source on the dataset grid ``(n, size, size)`` and their indices."""
    vol, spacing = coronal_slices(source.load())
    keep = np.flatnonzero(foreground_fraction(vol, config.foreground_threshold) >= config.min_foreground)
    size = (config.size, config.size)
    images = np.stack([pad_or_crop(resample(vol[i], spacing, config.spacing_mm), size) for i in keep])
    return images.astype(np.float32), keep


def ismrmrd_header(size: int, spacing_mm: float, source: Source) -> str:
    """A small ISMRMRD XML header with the encoded/recon matrix and field of view."""
    fov = size * spacing_mm
    space = (
        f"<matrixSize><x>{size}</x><y>{size}</y><z>1</z></matrixSize>"
        f"<fieldOfView_mm><x>{fov}</x><y>{fov}</y><z>{spacing_mm}</z></fieldOfView_mm>"
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        f"<measurementInformation><protocolName>{source.name} simulated single-coil"
        "</protocolName></measurementInformation>"
        f"<encoding><encodedSpace>{space}</encodedSpace><reconSpace>{space}</reconSpace>"
        "<trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"
    )


def write_fastmri_h5(
    path: str | os.PathLike,
    images: np.ndarray,
    source: Source,
    config: PrepareConfig,
    extra_attrs: dict | None = None,
) -> None:
    """Write magnitude slices as a fastMRI single-coil h5 (atomic)."""
    images = np.asarray(images, dtype=np.float32)
    kspace = magnitude_to_kspace(images)
    with atomic_h5(path) as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_esc", data=images, compression="gzip", compression_opts=4)
        f.create_dataset("ismrmrd_header", data=ismrmrd_header(config.size, config.spacing_mm, source))
        f.attrs["acquisition"] = "CORT1"
        f.attrs["max"] = float(images.max())
        f.attrs["norm"] = float(np.linalg.norm(images))
        f.attrs["patient_id"] = hashlib.sha1(source.name.encode()).hexdigest()[:16]
        f.attrs["source"] = source.description
        f.attrs["licence"] = source.licence
        f.attrs["protocol"] = "magnitude -> zero phase -> centred orthonormal FFT"
        for key, value in (extra_attrs or {}).items():
            f.attrs[key] = value


def slab_ranges(n: int, slab: int) -> list[range]:
    """Contiguous index ranges of ``slab`` slices covering ``0..n``."""
    return [range(s, min(s + slab, n)) for s in range(0, n, slab)]


def assign_splits(source: Source, num_slabs: int, config: PrepareConfig) -> list[str]:
    """Split of every slab of a source (see the module docstring)."""
    if source.role == "test":
        return ["test"] * num_slabs
    splits = ["val" if k % config.val_every == config.val_every // 2 else "train" for k in range(num_slabs)]
    if source.name == "ch2":
        splits[num_slabs // 2] = "sample"
    return splits


def prepare_dataset(
    out_dir: str | os.PathLike, config: PrepareConfig | None = None, sources: list[str] | None = None
) -> Generator[Progress, None, dict]:
    """Write ``out_dir/{train,val,test,sample}/*.h5`` and ``out_dir/dataset.json``.

    Yields progress per slab; returns the manifest written to ``dataset.json``.
    """
    config = config or PrepareConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = sources or list(SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise InputError(None, f"unknown source(s) {unknown}; choose from {sorted(SOURCES)}")
    manifest = {"config": asdict(config), "sources": {}, "files": []}
    loaded = []
    for name in names:
        source = SOURCES[name]
        images, kept = prepared_slices(source, config)
        loaded.append((source, images, kept))
    total = sum(len(slab_ranges(len(images), config.slab)) for _, images, _ in loaded)
    done = 0
    yield Progress(0, total, "preparing slabs")
    for source, images, kept in loaded:
        ranges = slab_ranges(len(images), config.slab)
        splits = assign_splits(source, len(ranges), config)
        manifest["sources"][source.name] = {
            "description": source.description,
            "licence": source.licence,
            "debian_package": source.debian_package,
            "kept_slices": len(images),
            "slabs": len(ranges),
        }
        for k, (r, split) in enumerate(zip(ranges, splits)):
            folder = out / split
            folder.mkdir(exist_ok=True)
            fname = f"{source.name}_cor_slab{k:02d}.h5"
            first, last = int(kept[r.start]), int(kept[r.stop - 1])
            write_fastmri_h5(
                folder / fname,
                images[r.start : r.stop],
                source,
                config,
                {"split": split, "native_slices": f"{first}-{last}"},
            )
            manifest["files"].append(
                {"file": f"{split}/{fname}", "source": source.name, "split": split,
                 "slices": len(r), "native_slices": [first, last]}
            )
            done += 1
            yield Progress(done, total, f"{source.name} slab {k}")
    write_json(out / "dataset.json", manifest)
    return manifest


def dataset_files(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """The h5 files of one split of a prepared dataset (sorted); error when there are none."""
    if not Path(data_dir).is_dir():
        raise InputError(data_dir, "data folder does not exist" if not Path(data_dir).exists() else "is not a folder")
    folder = Path(data_dir) / split
    files = sorted(folder.glob("*.h5"))
    if not files:
        raise InputError(folder, f"no .h5 files for split '{split}' (run 'nascsmri data prepare')")
    return files

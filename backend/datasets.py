"""Build fastMRI-layout single-coil datasets from real magnitude MRI scans.

Sources (all installable packages, nothing downloaded at run time; split by subject):

=========  ================================================================  ============  ==========
name       what it is                                                        licence       split
=========  ================================================================  ============  ==========
ch2        Debian ``mricron-data`` ``ch2.nii.gz``: Colin Holmes T1 head, 1 mm;   BSD-3-Clause  train/val
           an *average of 27 scans of one person*; coronal only (its other                    by slab;
           orientations would put the held-out sample's voxels into training)                sample
mni152     nilearn's MNI ICBM152 2009a T1 template (skull-stripped, 152          MNI notice    train
           subjects averaged), 1 mm, three orientations
dwi_b5     PyPI ``heudiconv`` test data: brain DWI b = 5 (T2-weighted look),     Apache-2.0    train
           Siemens Prisma 3 T, 1.5 mm, three orientations
dwi_b1500  the same subject at b = 1500 (low signal, noisy), three orientations   Apache-2.0    train
shoulder   PyPI ``pydicom-data`` MR2_UNCR: shoulder T1 SE, one 1024^2 slice      MIT           train
abdomen    PyPI ``pydicom-data``: abdomen T1 VIBE fat-sat, one 484^2 slice       MIT           train
itk_t1     Debian ``insighttoolkit5-examples`` ``KmeansTest_T1UCharRaw``:        Apache-2.0    test
           another subject's single T1 scan, 2 x 2 x 3 mm, coronal
=========  ================================================================  ============  ==========

Protocol (documented defaults in :class:`backend.config.PrepareConfig`):

1. Reorient to RAS and take the source's orientations (:data:`ORIENTATIONS`; see
   :func:`coronal_slices` for how rows and columns run). A few saturated voxels (a maximum
   over twice the 99.99th percentile) are clipped to that percentile.
2. Skip near-empty slices: keep a slice when at least ``min_foreground`` (15 %) of its *native*
   area is above ``foreground_threshold`` (10 %) of the volume's 99th percentile.
3. Resample in-plane to ``spacing_mm`` (1 mm; cubic spline, only the ITK volume changes),
   then centre pad/crop to the square grid ``size`` (224).
4. Magnitude -> zero-phase complex image -> centred orthonormal FFT = simulated fully sampled
   single-coil k-space (the paper's brain protocol). ``reconstruction_esc`` = the magnitude.
5. Contiguous slabs of ``slab`` slices per orientation, one h5 file each
   (``<source>_<cor|axi|sag>_slabNN.h5``). Splits are by subject, and within ch2 by slab:
   ``itk_t1`` is the test set; every ``val_every``-th ch2 slab is validation and its middle
   slab the shipped sample (neither train nor val); every other source is training data.
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
from .files import atomic_h5, write_json
from .progress import Progress
from .transforms import magnitude_to_kspace, pad_or_crop

CH2_PATH = "/usr/share/mricron/templates/ch2.nii.gz"
#: Slice orientations of a 3-D source; file names carry their first three letters.
ORIENTATIONS = ("coronal", "axial", "sagittal")
ITK_T1_PATH = "/usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz"


@dataclass(frozen=True)
class Source:
    """A real scan: how to load it, its licence, and its role in the split."""

    name: str
    description: str
    licence: str
    role: str  # "trainval" (train/val by slab), "train" (every slab) or "test"
    debian_package: str | None
    load: Callable[[], "object"]  # -> nibabel image (a 2-D scan: one slice of depth 1)
    orientations: tuple[str, ...] = ORIENTATIONS
    pypi_package: str | None = None


def _load_path(path: str, package: str):
    def load():
        import nibabel as nib

        if not os.path.exists(path):
            raise InputError(path, f"missing: install the Debian package '{package}'")
        return nib.load(path)

    return load


def _package_file(package: str, relative: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(None, f"missing: install the PyPI package '{package}' (pip install --no-deps {package})")
    path = os.path.join(spec.submodule_search_locations[0], relative)
    if not os.path.exists(path):
        raise InputError(path, f"missing from the installed '{package}'")
    return path


def _load_mosaic(package: str, relative: str):
    """A Siemens mosaic DICOM volume (nibabel's DICOM wrapper; needs pydicom) as a NIfTI image."""
    def load():
        import warnings

        import nibabel as nib

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nibabel calls its DICOM readers experimental
            from nibabel.nicom import dicomwrappers

            wrapper = dicomwrappers.wrapper_from_file(_package_file(package, relative))
            data = np.asarray(wrapper.get_data(), dtype=np.float32)
        return nib.Nifti1Image(data, np.asarray(wrapper.affine))

    return load


def _load_dicom_slice(package: str, relative: str):
    """One 2-D DICOM MR image as a NIfTI image of depth 1 (its pixel spacing kept)."""
    def load():
        import nibabel as nib
        import pydicom

        ds = pydicom.dcmread(_package_file(package, relative))
        pixels = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1)
        dy, dx = (float(v) for v in ds.PixelSpacing)
        # rows -> superior..inferior, columns -> right..left, as coronal_slices() reads them
        affine = np.diag([-dx, 1.0, -dy, 1.0])
        return nib.Nifti1Image(np.ascontiguousarray(pixels.T[:, None, :]), affine)

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
        ("coronal",),  # other orientations would put the held-out sample's voxels into training
    ),
    "mni152": Source(
        "mni152",
        "MNI ICBM152 2009a symmetric T1 template, skull-stripped (152 subjects), 1 mm, from nilearn",
        "MNI ICBM152 copyright notice (use and redistribution permitted with the notice); "
        "nilearn BSD-3-Clause",
        "train",
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
        ("coronal",),
    ),
    "dwi_b5": Source(
        "dwi_b5",
        "Brain diffusion-weighted EPI, b = 5 s/mm2 (a T2-weighted look), Siemens Prisma 3 T, "
        "multiband 3, 1.5 mm isotropic (heudiconv's test data)",
        "Apache-2.0 (heudiconv; PyPI heudiconv 1.5.1)",
        "train",
        None,
        _load_mosaic("heudiconv", "tests/data/b0dwiForFmap/b0dwi_for_fmap+00001.dcm"),
        pypi_package="heudiconv==1.5.1",
    ),
    "dwi_b1500": Source(
        "dwi_b1500",
        "The same subject's diffusion-weighted EPI at b = 1500 s/mm2 (low signal, noisy), 1.5 mm",
        "Apache-2.0 (heudiconv; PyPI heudiconv 1.5.1)",
        "train",
        None,
        _load_mosaic("heudiconv", "tests/data/b0dwiForFmap/b0dwi_for_fmap+00003.dcm"),
        pypi_package="heudiconv==1.5.1",
    ),
    "shoulder": Source(
        "shoulder",
        "Shoulder, T1-weighted spin echo, Philips 1.5 T, one slice of 1024x1024 at 0.195 mm "
        "(NEMA WG04 sample MR2_UNCR)",
        "MIT (pydicom-data 1.0.0; images from the NEMA WG04 samples)",
        "train",
        None,
        _load_dicom_slice("data_store", "data/MR2_UNCR.dcm"),
        ("coronal",),
        pypi_package="pydicom-data==1.0.0",
    ),
    "abdomen": Source(
        "abdomen",
        "Abdomen (liver, kidneys), T1 VIBE fat-saturated, Siemens Avanto 1.5 T, one slice of "
        "484x484 at 0.72 mm",
        "MIT (pydicom-data 1.0.0; originally a GDCM test file)",
        "train",
        None,
        _load_dicom_slice("data_store", "data/MR-SIEMENS-DICOM-WithOverlays.dcm"),
        ("coronal",),
        pypi_package="pydicom-data==1.0.0",
    ),
}


def coronal_slices(image, orientation: str = "coronal") -> tuple[np.ndarray, tuple[float, float]]:
    """Slices ``(n, rows, cols)`` of a nibabel image in ``orientation`` and their pixel size (mm).

    Radiological display: coronal rows run superior -> inferior and columns from the patient's
    right to left; axial rows anterior -> posterior, columns right -> left; sagittal rows
    superior -> inferior, columns anterior -> posterior.
    """
    import nibabel as nib

    canon = nib.as_closest_canonical(image)  # RAS+: x -> right, y -> anterior, z -> superior
    data = np.asarray(canon.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(None, f"expected a 3-D volume, got shape {data.shape}")
    zx, zy, zz = (float(z) for z in canon.header.get_zooms()[:3])
    if orientation == "coronal":  # (x, y, z) -> (y, z, x); superior is row 0, the patient's right col 0
        return np.ascontiguousarray(np.transpose(data, (1, 2, 0))[:, ::-1, ::-1]), (zz, zx)
    if orientation == "axial":  # (z, y, x): anterior is row 0, the patient's right col 0
        return np.ascontiguousarray(np.transpose(data, (2, 1, 0))[:, ::-1, ::-1]), (zy, zx)
    if orientation == "sagittal":  # (x, z, y): superior is row 0, anterior col 0
        return np.ascontiguousarray(np.transpose(data, (0, 2, 1))[:, ::-1, ::-1]), (zz, zy)
    raise ValueError(f"orientation must be one of {', '.join(ORIENTATIONS)}, not {orientation!r}")


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


def prepared_slices(source: Source, config: PrepareConfig, orientation: str = "coronal",
                    image=None) -> tuple[np.ndarray, np.ndarray]:
    """The kept slices of a source on the dataset grid ``(n, size, size)`` and their indices
    (``image``: the source's loaded nibabel image, to load it once for several orientations)."""
    vol, spacing = coronal_slices(source.load() if image is None else image, orientation)
    # a few saturated voxels (e.g. 65535 in a DICOM mosaic) would set the intensity scale
    top = float(np.percentile(vol, 99.99))
    if vol.max() > 2 * top > 0:
        vol = np.clip(vol, 0, top)
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
    if source.role in ("test", "train"):
        return [source.role] * num_slabs
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
        image = source.load()
        for orientation in source.orientations:
            images, kept = prepared_slices(source, config, orientation, image)
            loaded.append((source, orientation, images, kept))
    total = sum(len(slab_ranges(len(images), config.slab)) for _, _, images, _ in loaded)
    done = 0
    yield Progress(0, total, "preparing slabs")
    for source, orientation, images, kept in loaded:
        ranges = slab_ranges(len(images), config.slab)
        splits = assign_splits(source, len(ranges), config)
        entry = manifest["sources"].setdefault(source.name, {
            "description": source.description,
            "licence": source.licence,
            "debian_package": source.debian_package,
            "pypi_package": source.pypi_package,
            "role": source.role,
            "kept_slices": {},
            "slabs": {},
        })
        entry["kept_slices"][orientation] = len(images)
        entry["slabs"][orientation] = len(ranges)
        for k, (r, split) in enumerate(zip(ranges, splits)):
            folder = out / split
            folder.mkdir(exist_ok=True)
            fname = f"{source.name}_{orientation[:3]}_slab{k:02d}.h5"
            first, last = int(kept[r.start]), int(kept[r.stop - 1])
            write_fastmri_h5(
                folder / fname,
                images[r.start : r.stop],
                source,
                config,
                {"split": split, "native_slices": f"{first}-{last}", "orientation": orientation},
            )
            manifest["files"].append(
                {"file": f"{split}/{fname}", "source": source.name, "split": split, "orientation": orientation,
                 "slices": len(r), "native_slices": [first, last]}
            )
            done += 1
            yield Progress(done, total, f"{source.name} {orientation} slab {k}")
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

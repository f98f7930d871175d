"""The ``nascsmri`` command line: the parser (typed flags, each naming its range) and :func:`main`.

Every subcommand is a function of :mod:`backend.commands`, which builds a config from
:mod:`backend.config` and calls the backend.

Exit status and error lines (see :func:`main`):

* 0 -- success.
* 2 -- the user can act on it: a bad input file, option or output path
  (:class:`~backend.errors.InputError`, raised by the backend where it knows the problem is
  about an input) or an operating-system error on a file (``OSError``: disk full, permission,
  I/O error). One line ``nascsmri: error: FILE: problem`` on stderr; argparse usage errors also
  exit 2.
* 1 -- an internal error (anything else, i.e. a bug or an exhausted machine): one line
  ``nascsmri: internal error: Type: message``; set ``NASCSMRI_DEBUG=1`` for the traceback.
* 130 -- interrupted.

Outputs are written atomically (temporary name + rename), and every output path is checked
before work starts, so a failed command leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__, commands
from . import config as cfg
from .errors import InputError

EXIT_INPUT_ERROR = 2
EXIT_INTERNAL_ERROR = 1


# -- typed flags: every numeric flag names its range -----------------------------------------
MAX_SEED = 2**32 - 1


class OneLineParser(argparse.ArgumentParser):
    """argparse with the tool's error contract: one line ``nascsmri: error: ...``, status 2
    (``--help`` still prints the usage)."""

    def error(self, message: str):
        print(f"nascsmri: error: {' '.join(message.split())}", file=sys.stderr)
        raise SystemExit(EXIT_INPUT_ERROR)


def _int_range(lo: int, hi: int):
    """argparse ``type=``: an integer in ``[lo, hi]``; argparse puts the flag in front."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except (ValueError, AttributeError):
            value = None
        if value is None or not lo <= value <= hi:
            kind = "a positive integer" if lo == 1 else "an integer"
            raise argparse.ArgumentTypeError(f"must be {kind} from {lo} to {hi}, got {text!r}")
        return value

    parse.__name__ = f"integer {lo}..{hi}"
    return parse


def _float_range(lo: float, hi: float):
    """argparse ``type=``: a finite number in ``[lo, hi]`` (NaN and Inf refused)."""
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except (ValueError, TypeError):
            value = math.nan
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"must be a finite number from {lo:g} to {hi:g}, got {text!r}")
        return value

    parse.__name__ = f"number {lo:g}..{hi:g}"
    return parse


def _device(text: str) -> str:
    from .errors import check_device

    try:
        check_device(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(f"{err.problem}") from None
    return text


_positive_int = _int_range(1, 1024)
SEED = _int_range(0, MAX_SEED)
CROP = _int_range(8, 4096)
BLOCKS = _int_range(1, 64)


# -- flags shared by subcommands -----------------------------------------------------------


def _add_mask_args(p: argparse.ArgumentParser) -> None:
    d = cfg.ReconConfig()
    from .masks_2d import ALL_MASK_KINDS

    p.add_argument("--mask", choices=ALL_MASK_KINDS, default=d.mask,
                   help="mask type: random, equispaced (fastMRI semantics), gaussian (1-D variable density, "
                        "exactly W/acceleration lines), or the 2-D patterns gaussian2d and poisson (variable-"
                        "density Poisson disc; both phase-encode axes, as in 3-D acquisitions, centre square "
                        "fully sampled); default %(default)s")
    p.add_argument("--acceleration", type=_float_range(1, 1e6), default=d.acceleration, help="nominal acceleration, e.g. 4 or 8 (1 to 1e6; default %(default)g)")
    p.add_argument("--center-fraction", type=_float_range(0, 1), default=None, help="fully sampled centre fraction, 0 to 1 (default 0.32/acceleration: 8%% at 4x, 4%% at 8x)")
    p.add_argument("--seed", type=SEED, default=None, help=f"mask seed, 0 to {MAX_SEED} (default: fastMRI per-volume seed from the file name)")
    p.add_argument("--mask-file", default=None, help="use a saved column mask or 2-D pattern (.npy or .json, see backend.mask_files) instead of drawing one")


def _add_architecture_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """Flags naming a registry network, shared by ``train`` and ``model-info``."""
    p.add_argument("--model", required=required, choices=cfg.network_model_names(),
                   help="network name" + ("" if required else " (required unless --config names it)"))
    p.add_argument("--genotype", default=None, help="genotype JSON for nasn (default: the shipped NasN genotype)")
    p.add_argument("--blocks", type=BLOCKS, default=None,
                   help="residual blocks (dccnn, modl) or recursions (rdn), 1 to 64; default 3")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``search`` and ``train``."""
    p.add_argument("--epochs", type=_int_range(1, 100_000), default=None, help="override the preset's epochs (1 to 100000)")
    p.add_argument("--steps-per-epoch", type=_int_range(1, 10_000_000), default=None, help="override the preset's steps per epoch (1 to 10^7)")
    p.add_argument("--crop", type=CROP, default=None, help="override the preset's square training crop (8 to 4096)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--seed", type=SEED, default=None, help=f"seed of initialisation, data order, augmentation and masks, 0 to {MAX_SEED} (default 0)")
    p.add_argument("--device", type=_device, default=None, help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--config", default=None, metavar="FILE.json",
                   help="settings as a JSON object of config fields (every field, e.g. lr, batch_size, "
                        "w_lr, alpha_lr; a run's config.json is one); flags given here override it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_coils_arg(p, what: str) -> None:
    p.add_argument("--coils", type=_int_range(0, 64), default=None, metavar="N",
                   help=f"0: single-coil {what} (default); N >= 2: every sample through N simulated coils with "
                        "low-resolution maps and the SENSE data consistency, validation on 8-coil volumes")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="nascsmri",
        description="Compressed-sensing MRI reconstruction with networks found by neural architecture search.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("reconstruct", help="reconstruct an undersampled volume", description="Undersample a volume (fastMRI .h5, ISMRMRD raw .h5, Siemens twix .dat, DICOM, NIfTI or .npy) with a Cartesian mask (columns or a 2-D pattern) and reconstruct it. Writes a fastMRI submission h5 with dataset 'reconstruction' (float32 magnitudes, slices x H x W).")
    p.add_argument("input", help="fastMRI .h5 (single-coil, multi-coil or test file), ISMRMRD raw .h5, Siemens twix "
                                 ".dat (VB, VD/VE), DICOM (a file or a folder of one series), .nii/.nii.gz or .npy")
    p.add_argument("--model", default="zero-filled", metavar="MODEL", help=f"one of: {', '.join(cfg.model_choices())} (default %(default)s)")
    p.add_argument("--weights", default=None, help="weights file for a network model (default: the shipped weights)")
    _add_mask_args(p)
    p.add_argument("--crop", type=CROP, default=None, help="reconstruction grid for raw k-space without reference, 8 to 4096 (default 320)")
    p.add_argument("--tv-weight", type=_float_range(0, 1e6), default=cfg.ReconConfig.tv_weight, help="TV regularisation weight, 0 to 1e6 (default %(default)g, the paper's)")
    p.add_argument("--tv-iterations", type=_int_range(1, 100_000), default=cfg.ReconConfig.tv_iterations, help="TV iterations, 1 to 100000 (default %(default)d)")
    p.add_argument("--tv-backend", choices=("auto", "bart", "torch"), default="auto", help="TV solver: BART's pics or the built-in PyTorch ADMM (default: BART when installed)")
    p.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N (default: CUDA when available)")
    p.add_argument("--execution", choices=("auto", "fast", "reference"), default=cfg.ReconConfig.execution,
                   help="network execution: 'fast' (CPU: re-planned NasN with a fused C kernel compiled on first "
                        "use, NASCSMRI_KERNELS=0 to skip it; same outputs to float32 rounding; CUDA: bf16 autocast), "
                        "'reference' (the training module as is); default %(default)s = fast")
    p.add_argument("--batch-size", type=_positive_int, default=None, help=f"slices per network call, 1 to 1024 (default {cfg.ReconConfig.batch_size})")
    p.add_argument("--coils", choices=cfg.COIL_MODES, default=cfg.ReconConfig.coils,
                   help="multi-coil files: 'multi' (and 'auto') reconstruct from the coil k-space with sensitivity maps and "
                        "SENSE data consistency; 'rss' combines the coils by root-sum-of-squares and simulates single-coil "
                        "k-space (default %(default)s)")
    p.add_argument("--coil-maps", choices=cfg.COIL_MAP_METHODS, default=cfg.ReconConfig.coil_maps,
                   help="sensitivity maps: ESPIRiT (BART ecalib) or the low-resolution centre; auto = ESPIRiT when BART "
                        "is installed (default %(default)s)")
    p.add_argument("--out", required=True, help="output .h5")
    p.add_argument("--json", default=None, metavar="METRICS.json", help="write metrics (mse nmse psnr ssim) and mask facts as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=commands.cmd_reconstruct)

    p = sub.add_parser("evaluate", help="metrics of reconstructions against references", description="Per-volume MSE, NMSE, PSNR, SSIM (fastMRI evaluate.py conventions) of every prediction h5 (dataset 'reconstruction') against the target h5 of the same name (reconstruction_esc / reconstruction_rss), with mean and std.")
    p.add_argument("--targets", required=True, help="folder of reference .h5 files")
    p.add_argument("--predictions", required=True, help="folder of prediction .h5 files (same file names)")
    p.add_argument("--json", default=None, help="write the per-volume table and summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=commands.cmd_evaluate)

    p = sub.add_parser("data", help="build datasets", description="Dataset tools.")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    d = cfg.PrepareConfig()
    q = dsub.add_parser("prepare", help="fastMRI-layout dataset from real scans", description="Build a fastMRI-layout single-coil dataset (train/val/test/sample folders of h5 files and dataset.json) from real MRI scans shipped by Debian mricron-data, nilearn, Debian insighttoolkit5-examples and the PyPI packages heudiconv (its DWI test series) and pydicom-data. See the README for the protocol and licences.")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--size", type=_int_range(8, 4096), default=d.size, help="square grid in pixels of 1 mm, 8 to 4096 (default %(default)d)")
    q.add_argument("--slab", type=_int_range(1, 4096), default=d.slab, help="slices per file, 1 to 4096 (default %(default)d)")
    q.add_argument("--sources", nargs="+", default=None,
                   help="subset of: ch2 mni152 itk_t1 dwi_b5 dwi_b1500 shoulder abdomen (default all)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=commands.cmd_data_prepare)
    q = dsub.add_parser("sample", help="(re)build the shipped sample volume", description="Write the small real sample volume (held-out ch2 slab, fastMRI single-coil layout) that ships with the package.")
    q.add_argument("--out", default=None, help="output .h5 (default: the package's sample file)")
    q.set_defaults(func=commands.cmd_data_sample)

    p = sub.add_parser("search", help="DARTS search of the NasN cell", description="Differentiable architecture search (DARTS, first order) of the cell inside the unrolled DC cascade: weights (SGD) on one half of the training files, alphas (Adam) on the other, early stop when the derived genotype is stable. Writes RUN/genotype.json, RUN/alphas.json, RUN/cell.png, RUN/alphas.png, RUN/history.json, RUN/checkpoint.pt, RUN/events.jsonl. Under torchrun it uses DistributedDataParallel.")
    p.add_argument("--data", default=None, help="prepared dataset folder (train/ and val/); required unless --config names it")
    p.add_argument("--space", choices=("A", "B", "extended"), default=None, help="operation search space (default A)")
    p.add_argument("--nodes", type=int, choices=(2, 3, 4), default=None, help="internal nodes per cell (default 3)")
    p.add_argument("--preset", choices=sorted(cfg.SEARCH_PRESETS), default=None, help="cpu: a small supernet on crops for 2 CPU cores; paper: the authors' sizes (default cpu)")
    p.add_argument("--channels", type=_int_range(1, 1024), default=None, help="override the preset's supernet channels (1 to 1024)")
    p.add_argument("--cells", type=_int_range(1, 64), default=None, help="override the preset's cells per module (1 to 64)")
    p.add_argument("--patience", type=_int_range(1, 100_000), default=None, help="early stop after this many epochs with an unchanged genotype (1 to 100000)")
    p.add_argument("--warmup-epochs", type=_int_range(0, 100_000), default=None, help="override the preset's weights-only warm-up epochs (0 to 100000)")
    p.add_argument("--method", choices=cfg.SEARCH_METHODS, default=None,
                   help="darts (the paper's, default), pc-darts (partial channels + edge normalisation), drnas "
                        "(Dirichlet mixing weights) or beta-darts (beta-decay regulariser)")
    p.add_argument("--select", choices=cfg.SELECTIONS, default=None,
                   help="derive the cell by argmax of the weights (default) or by perturbation (the operation and "
                        "inputs whose removal costs the supernet most validation loss)")
    _add_coils_arg(p, "search")
    _add_run_args(p)
    p.set_defaults(func=commands.cmd_search)

    p = sub.add_parser("train", help="train a network (NasN from a genotype, or a baseline)", description="Train a network on a prepared dataset (nascsmri data prepare): Adam, L1 loss, lr 1e-3 then 1e-4 at half the epochs, batch 2, a random 4x or 8x mask per slice each step, validation PSNR/SSIM per epoch. Writes RUN/best.safetensors, RUN/last.safetensors (+ JSON sidecars), RUN/checkpoint.pt, RUN/history.json, RUN/events.jsonl.")
    _add_architecture_args(p, required=False)
    p.add_argument("--data", default=None, help="prepared dataset folder (train/ and val/); required unless --config names it")
    p.add_argument("--preset", choices=sorted(cfg.TRAIN_PRESETS), default=None, help="cpu: small crops and epochs for 2 CPU cores; ship: the shipped weights' budget; paper: the authors' schedule (default cpu)")
    p.add_argument("--loss", choices=cfg.LOSSES, default=None, help="l1 (the paper's, default), ssim (1 - SSIM, fastMRI's window) or l1+ssim")
    p.add_argument("--no-augment", action="store_true", help="only the first round's augmentation (random square crops, smooth phase) instead of flips, contrast, field of view, linear phase, raw path, noise and rectangular grids")
    _add_coils_arg(p, "training")
    p.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="start from this weights file (fine-tuning, e.g. the shipped NasN with --coils) instead of "
                        "a seeded initialisation; its architecture must be the one trained")
    _add_run_args(p)
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("model-info", help="parameters and GFLOPs of a model", description="Parameter count and GFLOPs (conv multiply-accumulates + bias adds for one 320x320 2-channel input, the paper's convention) of a registry model.")
    _add_architecture_args(p)
    p.add_argument("--json", action="store_true", help='print {"params": int, "gflops": float}')
    p.set_defaults(func=commands.cmd_model_info)

    p = sub.add_parser("export-onnx", help="export a trained network with its DC layers to ONNX", description="Export a trained network (its data-consistency layers included) to an ONNX file for one grid, run it in onnxruntime and check it against PyTorch (fails, writing nothing, above 1e-4). Inputs: x and k0 as (1, 2, H, W) float32 on the normalised scale, mask (W,). Needs the [onnx] extra.")
    p.add_argument("--model", required=True, choices=cfg.network_model_names(), help="network name")
    p.add_argument("--weights", default=None, help="weights file (default: the shipped weights of --model)")
    p.add_argument("--size", type=_int_range(1, 1024), nargs="+", default=[320], metavar="N", help="grid: N (square) or H W, 8 to 1024 (default 320)")
    p.add_argument("--out", required=True, help="output .onnx")
    p.add_argument("--json", default=None, help="write the export report (grid, max abs difference) as JSON")
    p.set_defaults(func=commands.cmd_export_onnx)

    p = sub.add_parser("demo", help="reconstruct the shipped sample at 4x and 8x", description="Reconstruct the shipped real sample at 4x and 8x with every available method, print the metrics table, and write a side-by-side figure with error maps.")
    p.add_argument("--out", default="demo_out", help="output folder (default %(default)s)")
    p.add_argument("--tv-backend", choices=("auto", "bart", "torch"), default="auto", help="TV solver (default: BART when installed)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=commands.cmd_demo)
    return parser


def _terminate_as_interrupt() -> None:
    """SIGTERM (the GUI's Stop, a scheduler) behaves like Ctrl-C: clean-up code runs, temporary
    files are removed, runs record a ``stopped`` event; the last checkpoint stays."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _with_warnings(func, args) -> int:
    """Run a command; its warnings (numpy's RuntimeWarnings on odd data, ...) are shown after it
    succeeded and dropped when it failed, so that a failure is exactly one line."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        status = func(args)
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return status


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 1, 2 or 130, see the module docstring).

    Every failure prints exactly one line on stderr. ``InputError`` and ``OSError`` (a file the
    user can fix) exit 2; any other exception is an internal error, exit 1, reported with its
    type and message (its traceback with ``NASCSMRI_DEBUG=1``, never silently swallowed).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version (0) or a bad argument (2, one line printed)
        return stop.code if isinstance(stop.code, int) else EXIT_INPUT_ERROR
    _terminate_as_interrupt()
    try:
        return _with_warnings(args.func, args)
    except InputError as err:
        print(f"nascsmri: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("nascsmri: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        if os.environ.get("NASCSMRI_DEBUG"):
            raise
        where = f"{err.filename}: " if err.filename else ""
        problem = err.strerror or str(err) or type(err).__name__
        print(f"nascsmri: error: {where}{_one_line(problem)}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except Exception as err:
        if os.environ.get("NASCSMRI_DEBUG"):
            raise
        print(f"nascsmri: internal error: {type(err).__name__}: {_one_line(err)[:300]} "
              "(set NASCSMRI_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())

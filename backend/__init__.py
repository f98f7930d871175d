"""Backend of napari-nascsmri: data, masks, data consistency, models, search, training, metrics.

Conventions used everywhere in this package (documented once, in :mod:`backend.fft`):

* images are complex arrays ``(..., H, W)``; k-space is *centred* (DC at ``(H // 2, W // 2)``);
* the 2-D Fourier transform is orthonormal (``norm="ortho"``);
* undersampling masks select columns (the phase-encode direction, last axis ``W``);
* networks see images as 2 real channels ``(B, 2, H, W)`` = (real, imaginary).
"""

__version__ = "0.1.0"

"""Training infrastructure shared by the architecture search and the retraining.

* :mod:`.data`: training slices from a prepared dataset, augmentation (image-space crops,
  synthetic smooth phase), random 4x/8x masks, all derived from ``(seed, epoch, index)`` so that
  a resumed run sees exactly the batches an uninterrupted run would;
* :mod:`.runs`: run folders (config, events as JSON lines, atomic checkpoints, resume);
* :mod:`.distributed`: ``torchrun`` / DistributedDataParallel helpers;
* :mod:`.train`: the retraining loop (a generator of events).
"""

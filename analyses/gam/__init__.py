"""``ftmech reproduce gam``: GAM beside a transformer of the same size (cost, loss, receptive field, wrappers)."""

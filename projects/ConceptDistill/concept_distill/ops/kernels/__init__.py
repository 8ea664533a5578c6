"""numba kernels of ``cpu_point_ops``, one module per family; imported on first use."""

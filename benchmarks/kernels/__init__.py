"""One benchmark per Triton kernel in kernels/, each against its PyTorch reference."""

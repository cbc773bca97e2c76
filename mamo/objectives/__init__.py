"""MAMO pre-training objectives: ITC (itc.py), ITM (itm.py), MMM (mmm.py); loss primitives
with a kernels switch in losses.py."""

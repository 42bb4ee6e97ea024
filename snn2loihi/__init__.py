"""snn2loihi: soft-reset LIF SNNs from training to Loihi fixed point, netx HDF5 and Lava.

Data flows one way: blocks (``snn2loihi.blocks``) → quantizer (``snn2loihi.quantize``) →
fixed-point description (``snn2loihi.ir``) → netx file (``snn2loihi.netx``) / emulator
(``snn2loihi.sim.emulator``) / Lava processes (``snn2loihi.sim.lava_runner``) → accounting.
"""
# Lava's message infrastructure calls multiprocessing.set_start_method('fork') when it is
# first imported and raises if anything (tqdm's write lock, for one) has fixed the start
# method before. Importing it first keeps every later import order working.
try:
    import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
except (ImportError, ValueError):  # Lava absent or on an unsupported Python (3.11+):
    pass  # training and the emulator still work; the Lava backend reports what is missing

__version__ = "0.1.0"

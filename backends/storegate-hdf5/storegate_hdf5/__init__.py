"""storegate-hdf5: the HDF5 backend of storegate, installed as a plugin.

Registered in the entry-point group ``storegate.backends`` under the name ``hdf5``::

    from storegate import StoreGate
    sg = StoreGate(backend="hdf5", backend_args={"path": "run.h5"}, data_id="jets")
"""

from __future__ import annotations

from .backend import FORMAT_VERSION, HDF5Backend

__all__ = ["FORMAT_VERSION", "HDF5Backend"]
__version__ = "0.1.0"

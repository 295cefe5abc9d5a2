"""Importers and exporters between storegate and the files people already have.

Each converter imports its heavy libraries (pyarrow, awkward, h5py) only when it is called, so
``import storegate.convert`` needs nothing but numpy.

* :func:`import_kinoml_parquet` — kinoml's Parquet datasets (one awkward record per item, the
  last field the label) into any backend, ragged features as ragged vars.

Examples
--------
>>> import storegate.convert as convert
>>> callable(convert.import_kinoml_parquet)
True
"""

from .dispatch import convert, sniff
from .errors import (
    ConversionError,
    DestinationExistsError,
    MissingDependencyError,
    SourceFormatError,
    SourceNotFoundError,
    UnsupportedFieldError,
)
from .hdf5 import export_hdf5, import_hdf5
from .kinoml import KinomlImport, import_kinoml_parquet
from .npz import export_npz, import_npz
from .parquet import export_parquet, import_parquet
from .results import ExportResult, ImportedVar, ImportResult
from .staging import staged
from .stores import copy_store

__all__ = [
    "ConversionError",
    "DestinationExistsError",
    "ExportResult",
    "ImportResult",
    "ImportedVar",
    "KinomlImport",
    "MissingDependencyError",
    "SourceFormatError",
    "SourceNotFoundError",
    "UnsupportedFieldError",
    "convert",
    "copy_store",
    "export_hdf5",
    "export_npz",
    "export_parquet",
    "import_hdf5",
    "import_kinoml_parquet",
    "import_npz",
    "import_parquet",
    "sniff",
    "staged",
]

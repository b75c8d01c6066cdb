"""Where a funnel's candidates sit in the local catalog and in the version's item vectors.

Candidates that carry a position in the ANN index's id list (``Merged.positions``) are found by it: each
position is translated once and memoised (``state.position_rows``), so a request gathers rows without a
lookup among a million ids. The catalog agent tells the catalog memo where items sit as it stores them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from agents.funnel.candidates import Merged
from agents.funnel.embeddings import ItemVectors
from agents.funnel.filters import Filtered
from state.catalog_table import CatalogTable
from state.item_columns import ItemColumns
from state.items import ItemRecord
from state.position_rows import PositionRows
from streams.errors import ConfigError

I64 = npt.NDArray[np.int64]


class CandidateRows:
    """Rows of candidates in ``catalog`` (memoised when it is a :class:`CatalogTable`) and in the item
    vectors of :meth:`use_vectors`, for positions in ``index_ids`` (the ANN source's id list)."""

    def __init__(self, catalog: Mapping[str, ItemRecord], index_ids: Sequence[str] | None) -> None:
        self.catalog, self.index_ids = catalog, index_ids
        self._catalog: PositionRows | None = None
        if isinstance(catalog, CatalogTable):
            self._catalog = PositionRows(catalog.rows, missing=-1, generation=lambda: catalog.generation)
            if index_ids is not None:
                self._catalog.seed(index_ids)
        self._vectors: PositionRows | None = None

    def use_vectors(self, vectors: ItemVectors | None) -> None:
        """The item vectors of the model now served (None: none); every indexed position is translated now."""
        self._vectors = PositionRows(vectors.rows, missing=len(vectors.ids)) if vectors is not None else None
        if self._vectors is not None and self.index_ids is not None:
            self._vectors.seed(self.index_ids)

    def vector_rows(self, kept: Filtered, merged: Merged) -> I64 | None:
        """Rows of the kept candidates in the item vectors, by position where the ANN search gave one."""
        if self._vectors is None:
            return None
        ids = kept.records.ids  # aligned with the kept candidates
        pos = merged.positions[kept.index] if kept.index is not None else np.full(len(ids), -1, np.int64)
        return self._vectors.rows(ids, pos, merged.space)

    def catalog_rows(self, item_ids: Sequence[str], positions: I64, space: Sequence[str] | None) -> I64:
        """Rows of ``item_ids`` in the catalog (-1: not there), by ``positions`` in ``space`` where known."""
        if self._catalog is None:
            raise ConfigError("catalog rows need a CatalogTable as the funnel's catalog")
        return self._catalog.rows(item_ids, positions, space)

    def learn_catalog_rows(self, space: Sequence[str], positions: I64, rows: I64) -> None:
        """The catalog rows of items at ``positions`` of ``space``, as the catalog agent stores them. Ignored
        unless ``space`` is the id list this funnel's ANN source searches."""
        if self._catalog is not None and space is self.index_ids:
            self._catalog.learn(space, positions, rows)

    def local_columns(self, item_ids: Sequence[str], merged: Merged | None) -> ItemColumns:
        """The catalog's records of ``item_ids`` as columns (unknown ids: unknown rows)."""
        cat = self.catalog
        if isinstance(cat, CatalogTable) and merged is not None:
            return cat.columns_at(item_ids, self.catalog_rows(item_ids, merged.positions, merged.space))
        if isinstance(cat, CatalogTable):
            return cat.columns(item_ids)
        return ItemColumns.from_records(item_ids, [cat.get(i) for i in item_ids])

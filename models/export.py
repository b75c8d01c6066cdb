"""Export of trained models to ONNX (dynamic batch axis) and of item embeddings to a FAISS index."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.data import Dataset
from models.errors import ModelError
from models.ranker import MultiTaskRanker, RankerExport
from models.ranker_features import SERVING_FEATURES
from models.spec import OnnxSpec, TensorSpec
from models.train_two_tower import TrainedTwoTower
from models.two_tower import ItemTowerExport, UserTowerExport
from state.ann import AnnKind, build_index

OPSET = 17


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, spec: OnnxSpec) -> OnnxSpec:
    names_in = [t.name for t in spec.inputs]
    names_out = [t.name for t in spec.outputs]
    axes = {n: {0: "batch"} for n in names_in + names_out}
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its own deprecation
            torch.onnx.export(
                module, args, str(path), dynamo=False, input_names=names_in, output_names=names_out,
                dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True,
            )
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
        raise ModelError(f"{path}: ONNX export failed: {exc}") from exc
    return spec


def export_user_tower(trained: TrainedTwoTower, dataset: Dataset, path: Path) -> OnnxSpec:
    """``item_seq`` [batch, max_len] int64 (item indices, oldest first, left-padded with -1) and
    ``user_features`` [batch, F] float32 -> ``user_embedding`` [batch, D]."""
    cfg = trained.config
    n_feats = dataset.user_features.shape[1]
    spec = OnnxSpec(
        file=path.name,
        inputs=[
            TensorSpec(name="item_seq", dtype="int64", shape=[None, cfg.max_len], padding=-1,
                       doc="item indices (see item_ids file), most recent last, left-padded with -1"),
            TensorSpec(name="user_features", dtype="float32", shape=[None, n_feats],
                       columns=list(dataset.user_feature_names), defaults=[0.0] * n_feats),
        ],
        outputs=[TensorSpec(name="user_embedding", dtype="float32", shape=[None, cfg.dim])],
    )
    seq = torch.full((2, cfg.max_len), -1, dtype=torch.long)
    seq[:, -3:] = torch.arange(3)
    return _export(UserTowerExport(trained.model), (seq, torch.zeros(2, n_feats)), path, spec)


def export_item_tower(trained: TrainedTwoTower, dataset: Dataset, path: Path) -> OnnxSpec:
    """Content (and the item index, or -1 for an item the model never saw) -> ``item_embedding``."""
    c = dataset.content
    n_cat = c.category.shape[1]
    spec = OnnxSpec(
        file=path.name,
        inputs=[
            TensorSpec(name="item_idx", dtype="int64", shape=[None], padding=-1, doc="-1 for a new item"),
            TensorSpec(name="item_category", dtype="float32", shape=[None, n_cat], columns=list(c.category_names),
                       defaults=[0.0] * n_cat),
            TensorSpec(name="item_brand", dtype="int64", shape=[None], vocab=list(c.brand_names) or None,
                       doc="brand index, 0 = unknown"),
            TensorSpec(name="item_price_bucket", dtype="int64", shape=[None], doc="models.data.price_bucket"),
            TensorSpec(name="item_age_bucket", dtype="int64", shape=[None], doc="models.data.age_bucket"),
        ],
        outputs=[TensorSpec(name="item_embedding", dtype="float32", shape=[None, trained.config.dim])],
    )
    z = torch.zeros(2, dtype=torch.long)
    args = (torch.tensor([0, -1]), torch.zeros(2, n_cat), z, z, z)
    return _export(ItemTowerExport(trained.model), args, path, spec)


def export_ranker(model: MultiTaskRanker, path: Path) -> OnnxSpec:
    """``features`` [batch, len(SERVING_FEATURES)] float32 -> ``p_click``, ``p_purchase`` (= click and buy)."""
    n = len(SERVING_FEATURES)
    spec = OnnxSpec(
        file=path.name,
        inputs=[TensorSpec(name="features", dtype="float32", shape=[None, n], columns=list(SERVING_FEATURES),
                           defaults=[0.0] * n)],
        outputs=[
            TensorSpec(name="p_click", dtype="float32", shape=[None]),
            TensorSpec(name="p_purchase", dtype="float32", shape=[None], doc="p(click) x p(purchase | click)"),
        ],
    )
    return _export(RankerExport(model), (torch.zeros(2, n),), path, spec)


def export_item_index(
    trained: TrainedTwoTower, dataset: Dataset, index_path: Path, ids_path: Path, kind: AnnKind | None = None
) -> int:
    """Write every catalog item's embedding to a FAISS index (ids = item indices) and the index -> id list.

    Without ``kind``: exact search below 50,000 items (it is both faster and exact there), IVF above
    (``streamrec bench ann`` measures its recall and latency).
    """
    with torch.no_grad():
        emb = trained.model.item_embeddings().numpy().astype(np.float32)
    kind = kind or ("exact" if emb.shape[0] < 50_000 else "ivf")
    index = build_index(kind, np.arange(emb.shape[0], dtype=np.int64), emb)
    index.save(index_path)
    ids_path.write_text(json.dumps(list(dataset.items.ids)), encoding="utf-8")
    return int(emb.shape[1])

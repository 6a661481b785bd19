"""ONNX export: checker, Triton layout and config, dynamic batch, parity, exact CAM at serving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from gliomagrade.explain import cam_from_features, model_cam
from gliomagrade.export import ExportError, ExportResult, export_onnx, load_head, ort_session
from gliomagrade.models import GradingNet, build_model

SHAPE = (4, 16, 16, 16)


def _bn_trained(seed: int, **kw: object) -> GradingNet:
    """A smallcnn after a few train steps: BN running stats differ from any batch's own statistics."""
    torch.manual_seed(seed)
    model = build_model("smallcnn", 4, 2, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(4, *SHAPE) * 2 + 1), torch.tensor([0, 1, 0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[GradingNet], ExportResult]:
    folds = [_bn_trained(0), _bn_trained(1)]
    out = tmp_path_factory.mktemp("repo")
    result = export_onnx(
        folds, out, model_name="glioma-grader", version=3, input_shape=SHAPE, temperature=1.7,
        class_names=["LGG", "HGG"], sequences=["t1", "t1ce", "t2", "flair"], threshold=0.4,
    )
    return folds, result


def test_triton_layout_and_config(ensemble: tuple[list[GradingNet], ExportResult]) -> None:
    folds, result = ensemble
    repo = result.model_dir
    assert result.onnx_path == repo / "3" / "model.onnx" and result.config_path == repo / "config.pbtxt"
    config = _parse_with_tritons_schema(result.config_path)
    assert config["name"] == repo.name == "glioma-grader"
    assert config["platform"] == "onnxruntime_onnx" and config["max_batch_size"] == 8
    assert not config["dynamic_batching"]
    assert config["input"] == [["image", "TYPE_FP32", [4, 16, 16, 16]]]
    f_total = sum(m.feature_channels for m in folds)
    assert config["output"] == [["logits", "TYPE_FP32", [2]], ["features", "TYPE_FP32", [f_total, 2, 2, 2]]]


def _parse_with_tritons_schema(path: Path) -> dict:
    """Parse config.pbtxt with Triton's own ModelConfig proto, in a subprocess: tritonclient.grpc registers the
    same `inference.*` proto symbols as kserve, and the two cannot share a process (nor this test session)."""
    code = (
        "import json, sys\n"
        "from google.protobuf import text_format\n"
        "from tritonclient.grpc import model_config_pb2 as m\n"
        "c = text_format.Parse(open(sys.argv[1]).read(), m.ModelConfig())\n"
        "t = lambda x: m.DataType.Name(x.data_type)\n"
        "print(json.dumps({'name': c.name, 'platform': c.platform, 'max_batch_size': c.max_batch_size,\n"
        "  'dynamic_batching': c.HasField('dynamic_batching'),\n"
        "  'input': [[i.name, t(i), list(i.dims)] for i in c.input],\n"
        "  'output': [[o.name, t(o), list(o.dims)] for o in c.output]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)

def test_graph_passes_checker_with_pinned_opset_and_dynamic_batch(ensemble: tuple[list[GradingNet], ExportResult]) -> None:
    _, result = ensemble
    proto = onnx.load(str(result.onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.version for o in proto.opset_import if o.domain == ""} == {17}
    batch_dims = [o.type.tensor_type.shape.dim[0] for o in [*proto.graph.input, *proto.graph.output]]
    assert all(d.dim_param == "N" and not d.dim_value for d in batch_dims)
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node), "BN should be folded (eval mode)"


@pytest.mark.parametrize("batch", [1, 2])
def test_ensemble_matches_mean_of_fold_logits_and_exact_cam(ensemble: tuple, batch: int) -> None:
    folds, result = ensemble
    x = torch.randn(batch, *SHAPE)
    logits, fmap = ort_session(result.onnx_path).run(["logits", "features"], {"image": x.numpy()})
    with torch.no_grad():
        expected = torch.stack([m(x) for m in folds]).mean(0) / 1.7
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4)
    assert fmap.shape == (batch, *result.feature_shape)
    weight, bias, meta = load_head(result.head_path)
    assert weight.shape == (2, fmap.shape[1]) and meta["class_names"] == ["LGG", "HGG"] and meta["threshold"] == 0.4
    np.testing.assert_allclose(fmap.mean(axis=(2, 3, 4)) @ weight.T + bias, logits, atol=1e-5)
    # the served CAM (ONNX features + head) is the mean of the fold CAMs (before ReLU, up to 1/T)
    served = cam_from_features(fmap, weight, 1)
    fold_raw = [np.einsum("bfdhw,f->bdhw", m.forward_with_features(x)[1].detach().numpy(),
                          m.classifier.weight[1].detach().numpy()) for m in folds]
    np.testing.assert_allclose(served, np.maximum(np.mean(fold_raw, 0) / 1.7, 0), atol=1e-4)
    if batch == 1:  # a single model's CAM from its own features equals model_cam
        single = model_cam(folds[0], x, 1)
        assert single.shape == served.shape


def test_single_instance_norm_model_exports(tmp_path: Path) -> None:
    model = _bn_trained(2, norm="instance")
    result = export_onnx(model, tmp_path, model_name="m", input_shape=SHAPE)
    assert result.num_folds == 1 and result.max_abs_diff <= 1e-4
    head = json.loads(result.head_path.read_text())
    np.testing.assert_array_equal(np.asarray(head["weight"], np.float32), model.classifier.weight.detach().numpy())


def test_top_down_model_exports_with_its_finer_feature_grid(tmp_path: Path) -> None:
    model = _bn_trained(4, merge_stage=1, merge_width=8)
    result = export_onnx(model, tmp_path, model_name="m", input_shape=SHAPE)
    assert result.max_abs_diff <= 1e-4 and result.feature_shape == (8, 8, 8, 8)
    x = torch.randn(1, *SHAPE)
    _, fmap = ort_session(result.onnx_path).run(["logits", "features"], {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(fmap, model.forward_with_features(x)[1].numpy(), atol=1e-4)


def test_per_sequence_model_exports_with_grouped_convolutions(tmp_path: Path) -> None:
    model = _bn_trained(5, channels=(2, 2, 4, 4), per_sequence=True)
    result = export_onnx(model, tmp_path, model_name="m", input_shape=SHAPE)
    assert result.max_abs_diff <= 1e-4 and result.feature_shape[0] == 16


def test_parity_failure_and_bad_inputs_raise(tmp_path: Path) -> None:
    model = _bn_trained(3)
    with pytest.raises(ExportError, match="differ by"):
        export_onnx(model, tmp_path, model_name="m", input_shape=SHAPE, tolerance=1e-12)
    with pytest.raises(ExportError, match="num_classes=3"):
        export_onnx([model, build_model("smallcnn", 4, 3)], tmp_path, model_name="m", input_shape=SHAPE)
    with pytest.raises(ExportError, match=r"input_shape \(3, 16, 16, 16\)"):
        export_onnx(model, tmp_path, model_name="m", input_shape=(3, 16, 16, 16))


@pytest.mark.parametrize("tissue", [0, 3])
def test_lesion_gated_model_exports_its_gated_features(tmp_path: Path, tissue: int) -> None:
    """The gate (and the tissue path with its upsampling) runs inside the graph: ONNX features are the
    gated maps the exact CAM is made of."""
    model = _bn_trained(6, channels=(2, 2, 4, 4), lesion_gate=True, tissue_width=tissue)
    result = export_onnx(model, tmp_path, model_name="m", input_shape=SHAPE)
    assert result.max_abs_diff <= 1e-4
    x = torch.randn(1, *SHAPE)
    _, fmap = ort_session(result.onnx_path).run(["logits", "features"], {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(fmap, model.forward_with_features(x)[1].numpy(), atol=1e-4)

"""Build tests/data/tiny.onnx: P(positive) = mean pixel value; tiny_context.onnx, the same
with slide context (radius 1, self weight 2, threshold 0.5, 50 px steps); and tiny_review.onnx,
the same with calibration (logit + 1) and review bands. Run once; the files are committed.

A model whose answer is known for any image (white → 1, black → 0) makes every test of the
scan exact without training anything.
"""

import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

# Calibration P = sigmoid(logit(mean pixel) + 1); bands for error targets 0.05 and 0.10.
REVIEW_EXTRA = {
    "calibration": {"probability": {"a": 1.0, "b": 1.0}},
    "review": {
        "target": 0.05,
        "confidence": 0.95,
        "method": "test",
        "calibration_set": {"patients": 0, "patches": 0},
        "bands": {"probability": [[0.05, 0.4, 0.6], [0.10, 0.45, 0.55]]},
    },
}


def build(
    size: int = 8, context: dict[str, float] | None = None, extra: dict | None = None
) -> onnx.ModelProto:
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 3])
    probability = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])
    unsqueeze_axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Unsqueeze", ["mean", "axes"], ["probability"]),
        ],
        "tiny",
        [image],
        [probability],
        initializer=[unsqueeze_axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key = "patchscan"
    entry.value = json.dumps(
        {
            "name": "tiny",
            "version": "0",
            "description": "Test model: probability is the mean pixel value",
            "classes": ["non-IDC", "IDC"],
            "positive_class": "IDC",
            "input_size": [size, size],
            "threshold": 0.5,
            "license": "test only",
            "metrics": {},
            "training": {},
            **({"context": context} if context else {}),
            **(extra or {}),
        }
    )
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    folder = Path(__file__).parent / "data"
    onnx.save(build(), str(folder / "tiny.onnx"))
    context = {"step": 50, "radius": 1, "self_weight": 2.0, "threshold": 0.5}
    onnx.save(build(context=context), str(folder / "tiny_context.onnx"))
    onnx.save(build(extra=REVIEW_EXTRA), str(folder / "tiny_review.onnx"))

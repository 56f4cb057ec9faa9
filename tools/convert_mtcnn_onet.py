"""Convert MTCNN's output network (ONet) from facenet-pytorch's wheel (MIT) into the safetensors
file abawtools ships (abawtools/weights/mtcnn_onet.safetensors). Run once, by a developer; nothing
in abawtools reads the original at run time.

    pip download facenet-pytorch==2.6.0 --no-deps -d /tmp/fnp && unzip -o /tmp/fnp/*.whl -d /tmp/fnp
    python tools/convert_mtcnn_onet.py /tmp/fnp/facenet_pytorch/data/onet.pt abawtools/weights/mtcnn_onet.safetensors

`onet.pt` is a torch state dict; it is read with weights_only=True (tensors only, no code). The
box and landmark heads (dense6_2, dense6_3) are left out: abawtools asks ONet only whether a crop
is a face.
"""

import json
import sys


def main(src, dst):
    import torch
    from safetensors.torch import save_file

    from abawtools.facecheck import ONet

    state = torch.load(src, map_location="cpu", weights_only=True)
    keep = ONet().state_dict().keys()
    missing = [k for k in keep if k not in state]
    if missing:
        raise SystemExit(f"{src}: not MTCNN's ONet (no {', '.join(missing)})")
    tensors = {k: state[k].float().contiguous() for k in keep}
    meta = {"abaw.source": json.dumps({"file": "facenet_pytorch/data/onet.pt", "package": "facenet-pytorch 2.6.0",
                                       "licence": "MIT"})}
    save_file(tensors, dst, metadata=meta)
    print(f"{len(tensors)} tensors -> {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

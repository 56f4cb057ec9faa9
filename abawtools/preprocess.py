"""How a face crop becomes a model's input, one definition for extraction and fine-tuning:
ImageSpec (size, resampling, scale, mean/std, read from and written to preprocessor_config.json),
resize_face and normalize."""

from dataclasses import dataclass

from abawtools.hf import preprocessor_config

# ------------------------------------------------------------------------ preprocessing
# PIL's resample codes, as preprocessor_config.json stores them, and OpenCV's nearest equivalent
_RESAMPLE = {0: "INTER_NEAREST", 1: "INTER_LANCZOS4", 2: "INTER_LINEAR", 3: "INTER_CUBIC", 4: "INTER_AREA",
             5: "INTER_LINEAR"}


@dataclass(frozen=True)
class ImageSpec:
    """How a face crop becomes a model input: one definition for extraction and fine-tuning.

    size: the square input side; resample: PIL's code from preprocessor_config.json (used when a
    crop is enlarged; shrinking always uses area averaging, which is what PIL's antialiased resize
    does and what the cv2 equivalents of its filters do not); scale, mean, std: x * scale - mean / std.
    """

    size: int = 224
    resample: int = 2
    scale: float = 1 / 255
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)

    @classmethod
    def from_pretrained(cls, name, model_config=None, notes=None):
        """The spec a model's preprocessor_config.json gives. Missing values fall back (size: the
        model config's image_size, else 224; mean/std: ImageNet's); each fallback that changes
        what the model sees is added to `notes` (a list) for the caller to say, never silent:
        BEiT and DINOv2 expect mean/std 0.5, not ImageNet's."""
        pre = preprocessor_config(name)
        if notes is not None:
            missing = [k for k in ("image_mean", "image_std") if k not in pre]
            if not pre:
                notes.append(f"{name}: no preprocessor_config.json; assuming ImageNet mean/std and input size "
                             f"{getattr(model_config, 'image_size', 224)} (right for ViT/ResNet/ConvNeXt, not for "
                             "BEiT's 0.5/0.5): add the base model's preprocessor_config.json")
            elif missing:
                notes.append(f"{name}: preprocessor_config.json has no {' / '.join(missing)}; assuming ImageNet's")
        resize, crop = _side(pre.get("size")), _side(pre.get("crop_size"))
        # the processor's input is its centre crop when it crops (do_center_crop; a config that
        # names a crop_size but not the flag: the crop, as BEiT's processor did by default), else
        # its resize: a crop_size left in a config that does not crop is not the input size
        cropping = pre.get("do_center_crop", crop is not None)
        size = (crop if cropping and crop else resize) or getattr(model_config, "image_size", 224)
        if notes is not None and resize and crop and resize != crop:
            why = ("it centre-crops (do_center_crop) to crop_size" if cropping and crop else
                   "it does not centre-crop (do_center_crop false), so crop_size is unused")
            notes.append(f"{name}: preprocessor_config.json resizes to {resize} px and names crop_size {crop}; "
                         f"{why}: the model input is {size} px (--image-size to choose another)")
        return cls(
            size=size,
            resample=int(pre.get("resample", 2)),
            scale=float(pre.get("rescale_factor", 1 / 255)) if pre.get("do_rescale", True) else 1.0,
            mean=tuple(float(v) for v in pre.get("image_mean", cls.mean)),
            std=tuple(float(v) for v in pre.get("image_std", cls.std)),
        )

    def to_preprocessor_config(self, base=None):
        """What a fine-tuned model folder stores: `base` (the base model's preprocessor_config.json)
        changed so that `from_pretrained` here and Hugging Face's AutoImageProcessor both feed the
        model exactly what it was trained on, a size x size resize of the face crop, in every
        layout: ViT (size h/w), BEiT and DINOv2/BiT (resize, then a centre crop: turned off, both
        sizes set), ConvNeXt and ResNet (shortest_edge with crop_pct: crop_pct 1, so a square crop
        is resized whole). A base's own crop_size left in place would feed another size."""
        pre = dict(base or {})
        pre.update({"do_resize": True, "size": {"height": self.size, "width": self.size}, "resample": self.resample,
                    "do_rescale": self.scale != 1.0, "rescale_factor": self.scale, "do_normalize": True,
                    "image_mean": list(self.mean), "image_std": list(self.std)})
        if "crop_pct" in pre:  # ConvNeXt / ResNet: shortest_edge is the only key their processor takes,
            pre["size"] = {"shortest_edge": self.size}  # and with crop_pct it always ends on a square crop
        if "crop_size" in pre or "do_center_crop" in pre:
            pre.update(do_center_crop=False, crop_size={"height": self.size, "width": self.size})
        if "crop_pct" in pre:
            pre["crop_pct"] = 1.0
        return pre


def _side(size):
    """The side a processor's `size` / `crop_size` names (an int, a list, or a dict of height /
    shortest_edge / width), or None."""
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or size.get("width")
    if isinstance(size, (list, tuple)):
        size = size[0] if size else None
    return int(size) if size else None


def resize_face(image_bgr, spec):
    """A BGR face crop (any size) -> RGB uint8 (spec.size, spec.size, 3)."""
    import cv2

    h, w = image_bgr.shape[:2]
    if (h, w) != (spec.size, spec.size):
        shrink = h > spec.size or w > spec.size
        method = cv2.INTER_AREA if shrink else getattr(cv2, _RESAMPLE.get(spec.resample, "INTER_LINEAR"))
        image_bgr = cv2.resize(image_bgr, (spec.size, spec.size), interpolation=method)
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)


def normalize(pixels, spec):
    """uint8 or [0, 255] float tensor (N, 3, H, W) -> the model's input, float32 on its device."""
    import torch

    mean = torch.tensor(spec.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.float() * spec.scale - mean) / std

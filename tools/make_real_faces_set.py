"""Make tests/data/real/ (run once; its output is committed): small copies of real photographs whose
licences allow it, from two registry packages, for measuring the face detector on real pixels.

    pip download scikit-image==0.26.0 --no-deps -d /tmp/sk && unzip -o /tmp/sk/*.whl 'skimage/data/*' -d /tmp/sk
    python tools/make_real_faces_set.py /tmp/sk/skimage/data "$(python -c 'import matplotlib, os;
        print(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data"))')"

faces/  the three portraits (public domain / CC0), longest side 320 px
noface/ photographs and drawings without a human face (CC0 / public domain, and matplotlib's
        logo and clip-art sample), longest side 320 px; the detector must find nothing in them
Every file's source and licence is in tests/data/real/README.md.
"""

import os
import sys

import cv2

FACES = {"astronaut.png": "skimage", "grace_hopper.jpg": "mpl", "camera.png": "skimage"}
NOFACE = {name: "skimage" for name in ("chelsea.png", "coffee.png", "text.png", "rocket.jpg", "horse.png",
                                       "hubble_deep_field.jpg", "clock_motion.png", "coins.png", "retina.jpg",
                                       "grass.png", "brick.png", "gravel.png", "page.png", "logo.png")}
NOFACE.update({"logo2.png": "mpl", "Minduka_Present_Blue_Pack.png": "mpl"})
LOSSLESS = {"text", "page", "logo", "logo2", "minduka_present_blue_pack", "horse"}


def main(skimage_data, mpl_data, out=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "real")):
    for kind, names in (("faces", FACES), ("noface", NOFACE)):
        os.makedirs(os.path.join(out, kind), exist_ok=True)
        for name, where in names.items():
            image = cv2.imread(os.path.join(skimage_data if where == "skimage" else mpl_data, name), cv2.IMREAD_COLOR)
            scale = 320 / max(image.shape[:2])
            if scale < 1:
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            stem = os.path.splitext(name)[0].lower()
            if stem in LOSSLESS:  # drawings, letters, logos: JPEG's ringing changes what a detector sees
                cv2.imwrite(os.path.join(out, kind, stem + ".png"), image)
            else:
                cv2.imwrite(os.path.join(out, kind, stem + ".jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""Make tests/data/real/ (run once; its output is committed): small copies of real photographs and
drawings whose licences allow it, from registry packages, for measuring the face detector on real
pixels.

    pip download scikit-image==0.26.0 --no-deps -d /tmp/sk && unzip -o /tmp/sk/*.whl 'skimage/data/*' -d /tmp/sk
    pip download arcade==3.3.3 --no-deps -d /tmp/arc && unzip -o /tmp/arc/*.whl 'arcade/resources/*' -d /tmp/arc
    pip download scipy==1.9.3 --no-deps --only-binary=:all: --python-version 3.10 -d /tmp/sp \
        && unzip -o /tmp/sp/*.whl 'scipy/misc/face.dat' -d /tmp/sp
    python tools/make_real_faces_set.py /tmp/sk/skimage/data "$(python -c 'import matplotlib, os;
        print(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data"))')" \
        /tmp/arc/arcade/resources /tmp/sp/scipy/misc/face.dat     # the last two need Pillow

faces/  the three portraits (public domain / CC0), longest side 320 px
noface/ photographs and drawings without a human face (CC0 / public domain, and matplotlib's
        logo and clip-art sample), longest side 320 px; the detector must find nothing in them
cartoon/ Kenney's cartoon characters and creatures (CC0, as arcade ships them: sprites with their
        alpha), two of Kenney's backgrounds, and title words set in Kenney's fonts (CC0) as label
        masks (0 background, 128 outline, 255 letter), which tests/realfaces.py colours and lays
        on the backgrounds: a cartoon's title card
Every file's source and licence is in tests/data/real/README.md.
"""

import glob
import os
import shutil
import sys

import cv2
import numpy as np

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


SPRITES = ("animated_characters/*/*.png", "alien/*.png", "enemies/*.png")
BACKGROUNDS = ("abstract_1.jpg", "abstract_2.jpg")
WORDS = ("ADVENTURE", "THE BIG SHOW", "Episode 4", "OOPS!", "GO GO GO", "Happy Days", "BOO", "OK")


def cartoons(resources, out):
    """Kenney's sprites and backgrounds, and the title masks, from arcade's resources folder."""
    from PIL import Image, ImageDraw, ImageFont

    images = os.path.join(resources, "assets", "images")
    for kind in ("sprites", "backgrounds", "titles"):
        os.makedirs(os.path.join(out, "cartoon", kind), exist_ok=True)
    for pattern in SPRITES:
        for path in sorted(glob.glob(os.path.join(images, pattern))):
            shutil.copyfile(path, os.path.join(out, "cartoon", "sprites", os.path.basename(path)))  # as shipped
    for name in BACKGROUNDS:
        bg = cv2.resize(cv2.imread(os.path.join(images, "backgrounds", name)), (640, 360), interpolation=cv2.INTER_AREA)
        cv2.imwrite(os.path.join(out, "cartoon", "backgrounds", name), bg, [cv2.IMWRITE_JPEG_QUALITY, 90])
    for font_path in sorted(glob.glob(os.path.join(resources, "system", "fonts", "ttf", "Kenney", "*.ttf"))):
        for k, word in enumerate(WORDS):
            size = 160 if len(word) <= 4 else 90 if len(word) <= 9 else 64
            font = ImageFont.truetype(font_path, size)
            layers = []
            for stroke in (4, 0):  # the outline (the letters widened), then the letters
                canvas = Image.new("L", (640, 360), 0)
                draw = ImageDraw.Draw(canvas)
                box = draw.textbbox((0, 0), word, font=font, stroke_width=4)
                xy = ((640 - (box[2] - box[0])) // 2 - box[0], (360 - (box[3] - box[1])) // 2 - box[1])
                draw.text(xy, word, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
                layers.append(np.array(canvas) > 127)
            mask = np.where(layers[1], 255, np.where(layers[0], 128, 0)).astype(np.uint8)
            stem = os.path.splitext(os.path.basename(font_path))[0]
            cv2.imwrite(os.path.join(out, "cartoon", "titles", f"{stem}-{k}.png"), mask, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def raccoon(face_dat, out):
    """scipy.misc.face (scipy < 1.10 ships it as bz2-compressed raw RGB, 768 x 1024): an animal's face."""
    import bz2

    rgb = np.frombuffer(bz2.decompress(open(face_dat, "rb").read()), np.uint8).reshape(768, 1024, 3)
    image = cv2.resize(rgb[:, :, ::-1], (320, 240), interpolation=cv2.INTER_AREA)
    cv2.imwrite(os.path.join(out, "noface", "raccoon.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


if __name__ == "__main__":
    main(*sys.argv[1:3])
    if len(sys.argv) > 3:
        cartoons(sys.argv[3], os.path.join(os.path.dirname(__file__), "..", "tests", "data", "real"))
    if len(sys.argv) > 4:
        raccoon(sys.argv[4], os.path.join(os.path.dirname(__file__), "..", "tests", "data", "real"))

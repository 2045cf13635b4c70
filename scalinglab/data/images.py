"""Images as pixel-token sequences (Henighan et al. 2020): raster order, one token per intensity level,
R^2 tokens for grey and 3 R^2 for RGB (channels interleaved per pixel), each image preceded by a BOS token.

``image:digits8``: scikit-learn's 1,797 handwritten 8x8 digits, 17 grey levels (vocab 18 = 17 levels + BOS,
record 65 tokens). ``image:digits8-caption``: each image preceded by its label in words ("seven"), and
``image:digits8-blank``: the same layout with the caption blanked. Both share one vocabulary and one split,
so the caption-image mutual information (Henighan sec. 4) is, in nats per image,
    MI = 64 * (loss_on(digits8-blank) - loss_on(digits8-caption))
with the losses in nats per pixel token of the same model (the mask counts pixel targets only); the true value
is at most H(label) = ln 10 = 2.30 nats per image (an independent-pixel model overstates it: ~8.7). In the
``-caption`` train split a fraction ``blank_frac`` of the captions (chosen by image hash) is blanked so the
model also learns the unconditional distribution.

``image:FOLDER`` or ``image:X.npy``: any images, centre-cropped to a square and box-downsampled to
``size`` (8, 16 or 32), quantised to ``levels`` (default 256) per channel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scalinglab.errors import ConfigError, InputError

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CAPTION_CHARS = sorted(set("".join(WORDS)))
CAPTION_LEN = max(map(len, WORDS))
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class PixelTokenizer:
    """Pixel tokens <-> images for image datasets: level ids 0..levels-1, then special tokens."""

    kind = "pixels"

    def __init__(self, meta: dict) -> None:
        self.levels, self.size, self.channels = meta["levels"], meta["size"], meta["channels"]
        self.vocab_size = meta["vocab_size"]
        self.bos = meta["special_tokens"]["bos_image"]

    def encode(self, image: np.ndarray) -> list[int]:
        """An image of levels (size x size [x 3]) -> [BOS, pixels in raster order]."""
        return [self.bos] + np.asarray(image, dtype=np.int64).reshape(-1).tolist()

    def decode(self, ids) -> np.ndarray:
        """The last size*size*channels pixel tokens -> an image array of levels."""
        px = np.asarray(ids, dtype=np.int64)[-self.size * self.size * self.channels:]
        shape = (self.size, self.size) + ((3,) if self.channels == 3 else ())
        return px.reshape(shape)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (1797, 8, 8), levels 0..16, and labels; read from its CSV directly
    (importing sklearn.datasets costs seconds)."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("image:digits8 needs scikit-learn (pip install scikit-learn)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.images.astype(np.int64), d.target.astype(np.int64)
    a = np.loadtxt(gzip.open(path), delimiter=",", dtype=np.int64)
    return a[:, :64].reshape(-1, 8, 8), a[:, 64]


def _to_uint8(a: np.ndarray, where: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise InputError(f"{where}: float images must hold values in [0, 1]")
        return np.round(a * 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer) and a.min() >= 0 and a.max() <= 255:
        return a.astype(np.uint8)
    raise InputError(f"{where}: images must be uint8 0..255 or float 0..1, got {a.dtype}")


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and box-downsample to size x size (uint8 in, uint8 out)."""
    from PIL import Image

    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if s == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BOX))


def load_user_images(source: str, size: int, color: str) -> np.ndarray:
    """uint8 images (n, size, size) grey or (n, size, size, 3) RGB from a folder or a .npy file."""
    p = Path(source).expanduser()
    if p.suffix == ".npy" and p.is_file():
        try:
            a = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as e:  # not a .npy, truncated, or object arrays (pickles are refused)
            raise InputError(f"{p}: not a readable numeric .npy array ({str(e).splitlines()[0]})") from None
        if a.ndim == 4 and a.shape[-1] == 1:
            a = a[..., 0]
        if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)) or len(a) == 0:
            raise InputError(f"{p}: expected images of shape (n, H, W) or (n, H, W, 3), got {a.shape}")
        imgs = list(_to_uint8(a, str(p)))
    elif p.is_dir():
        from PIL import Image

        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXT)
        if not files:
            raise InputError(f"image folder {p} holds no image files ({', '.join(sorted(IMAGE_EXT))})")
        imgs = []
        for f in files:
            try:
                with Image.open(f) as im:
                    imgs.append(np.asarray(im.convert("RGB")))
            except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
                raise InputError(f"{f}: not a readable image ({type(e).__name__}: {e})") from None
    else:
        raise InputError(f"image source {source!r} is not digits8, a folder of images or a .npy file")
    is_rgb = imgs[0].ndim == 3
    if color == "grey" or (color == "auto" and is_rgb and all(
            np.array_equal(i[..., 0], i[..., 1]) and np.array_equal(i[..., 1], i[..., 2]) for i in imgs)):
        imgs = [i if i.ndim == 2 else np.round(i @ [0.299, 0.587, 0.114]).astype(np.uint8) for i in imgs]
    elif color == "rgb":
        imgs = [i if i.ndim == 3 else np.repeat(i[..., None], 3, axis=-1) for i in imgs]
    elif color != "auto":
        raise ConfigError(f"color={color!r}: use auto, grey or rgb")
    return np.stack([_resize(i, size) for i in imgs])


def build_images(spec):
    from scalinglab.data.build import Built, SplitData
    from scalinglab.data.splits import SPLITS, assign_splits, doc_unit

    src, size = spec.source, spec.opt("size")
    caption = None
    if src in ("digits8", "digits8-caption", "digits8-blank"):
        if spec.options.get("levels") not in (None, 17) or size != 8:
            raise ConfigError("digits8 images are 8x8 with 17 grey levels; size and levels cannot change")
        px, labels = _digits()
        levels, caption = 17, (None if src == "digits8" else src.split("-")[1])
    else:
        if size not in (8, 16, 32):
            raise ConfigError(f"size={size}: images are downsampled to 8, 16 or 32 pixels a side")
        levels = spec.opt("levels") or 256
        if not 2 <= levels <= 256:
            raise ConfigError(f"levels={levels}: must lie in 2..256")
        img = load_user_images(src, size, spec.opt("color"))
        px = (img.astype(np.int64) * levels) // 256
        labels = None
    n = len(px)
    channels = 3 if px.ndim == 4 else 1
    flat = px.reshape(n, -1)
    bos = levels
    special = {"bos_image": bos}
    if caption is None:
        records = np.concatenate([np.full((n, 1), bos), flat], axis=1)
        n_prefix = 1
    else:
        bos_cap, pad = levels + 1, levels + 2
        char_id = {c: levels + 3 + i for i, c in enumerate(CAPTION_CHARS)}
        special.update(bos_caption=bos_cap, pad=pad, chars=char_id)
        cap = np.full((n, CAPTION_LEN), pad)
        for i, y in enumerate(labels):
            cap[i, :len(WORDS[y])] = [char_id[c] for c in WORDS[y]]
        records = np.concatenate([np.full((n, 1), bos_cap), cap, np.full((n, 1), bos), flat], axis=1)
        n_prefix = CAPTION_LEN + 2
    vocab = int(records.max()) + 1 if caption is None else levels + 3 + len(CAPTION_CHARS)
    keys = [f.astype(np.uint8).tobytes() for f in flat]  # split by the image alone: all variants agree
    where = np.array(assign_splits(keys, spec.opt("val_frac"), spec.opt("test_frac")))
    rec_len = records.shape[1]
    mask_row = np.zeros(rec_len, dtype=np.uint8)
    mask_row[n_prefix:] = 1  # targets at pixel positions count; BOS / caption positions do not
    splits = {}
    for s in SPLITS:
        r = records[where == s].copy()
        if caption == "blank" or (caption == "caption" and s == "train"):
            frac = 1.0 if caption == "blank" else spec.opt("blank_frac")
            idx = np.flatnonzero(where == s)
            blank = np.array([doc_unit(b"blank" + keys[i]) < frac for i in idx], dtype=bool)
            r[blank, 1:1 + CAPTION_LEN] = special.get("pad", 0)
        splits[s] = SplitData(r.reshape(-1), np.arange(len(r), dtype=np.int64) * rec_len,
                              mask=np.tile(mask_row, len(r)))
    return Built(domain="image", vocab_size=vocab, splits=splits,
                 tokenizer={"kind": "pixels", "fingerprint": f"pixels-{levels}-{size}-{channels}-{caption}",
                            "vocab_size": vocab},
                 split_rule={"rule": "sha256(image pixels)[:8] / 2**64: < test_frac test, < +val_frac val",
                             "val_frac": spec.opt("val_frac"), "test_frac": spec.opt("test_frac")},
                 record_len=rec_len, align="record",
                 extra={"levels": levels, "size": int(px.shape[1]), "channels": channels, "caption": caption,
                        "special_tokens": special, "image_tokens": int(flat.shape[1]),
                        "caption_len": CAPTION_LEN if caption else 0, "n_images": n})

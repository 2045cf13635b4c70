"""Images as pixel tokens: digits 8x8 (17 levels), captions, user folders / .npy downsampled, bad shapes."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.data import open_dataset, prepare
from scalinglab.errors import InputError


def test_digits_are_the_sklearn_images_in_raster_order(digits):
    from scalinglab.data.images import _digits

    ref, labels = _digits()  # scikit-learn's digits.csv.gz, read without importing sklearn.datasets (slow)
    assert ref.shape == (1797, 8, 8) and ref.min() == 0 and ref.max() == 16
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # UCI test set
    assert ref[0, 0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0] and labels[0] == 0
    assert digits.vocab_size == 18 and digits.record_len == 65
    n = sum(digits.meta["splits"][s]["documents"] for s in ("train", "val", "test"))
    assert n == 1797
    rec = np.concatenate([np.asarray(digits.tokens(s)).reshape(-1, 65) for s in ("train", "val", "test")])
    assert (rec[:, 0] == 17).all()
    got = sorted(r[1:].astype(np.uint8).tobytes() for r in rec)
    assert got == sorted(r.reshape(-1).astype(np.uint8).tobytes() for r in ref)
    img = digits.tokenizer.decode(rec[0])
    assert img.shape == (8, 8) and any((img == r).all() for r in ref)


def test_caption_and_blank_share_vocab_split_and_images(tmp_path):
    cap = open_dataset(prepare("image:digits8-caption", tmp_path / "cap").path)
    blank = open_dataset(prepare("image:digits8-blank", tmp_path / "blank").path)
    assert cap.vocab_size == blank.vocab_size and cap.record_len == blank.record_len == 71
    sp = cap.meta["special_tokens"]
    for s in ("val", "test"):
        a = np.asarray(cap.tokens(s)).reshape(-1, 71)
        b = np.asarray(blank.tokens(s)).reshape(-1, 71)
        assert (a[:, 7:] == b[:, 7:]).all()  # same images in the same order
        assert (b[:, 1:6] == sp["pad"]).all() and (a[:, 1] != sp["pad"]).all()
    chars = {v: k for k, v in sp["chars"].items()}
    words = {"".join(chars.get(t, "") for t in r[1:6]) for r in np.asarray(cap.tokens("val")).reshape(-1, 71)}
    assert words <= {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    tr = np.asarray(cap.tokens("train")).reshape(-1, 71)
    blank_frac = (tr[:, 1] == sp["pad"]).mean()
    assert 0.1 < blank_frac < 0.3
    m = np.asarray(cap.mask("train")).reshape(-1, 71)
    assert (m[:, :7] == 0).all() and (m[:, 7:] == 1).all()


def test_user_npy_and_folder_are_downsampled(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(40, 16, 16), dtype=np.uint8)
    grey = small.repeat(2, axis=1).repeat(2, axis=2)  # 2x2 constant blocks: box filter is exact
    np.save(tmp_path / "g.npy", grey)
    ds = open_dataset(prepare(f"image:{tmp_path / 'g.npy'},size=16,levels=16", tmp_path / "g").path)
    assert ds.record_len == 1 + 16 * 16 and ds.vocab_size == 17
    assert ds.tokens("train").max() == 16  # 0..15 levels, 16 = BOS
    want = {(s // 16).astype(np.uint8).tobytes() for s in small}
    got = {r[1:].astype(np.uint8).tobytes() for s in ("train", "val", "test")
           for r in np.asarray(ds.tokens(s)).reshape(-1, 257)}
    assert got == want

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    rgb = open_dataset(prepare(f"image:{folder}", tmp_path / "rgb").path)
    assert rgb.record_len == 1 + 3 * 64 and rgb.vocab_size == 257 and rgb.dtype == np.uint16


def test_wrong_shapes_are_refused(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((5, 8, 8, 4), dtype=np.uint8))
    with pytest.raises(InputError, match=r"shape \(n, H, W\) or \(n, H, W, 3\), got \(5, 8, 8, 4\)"):
        prepare(f"image:{tmp_path / 'bad.npy'}", tmp_path / "o")
    np.save(tmp_path / "flt.npy", np.full((5, 8, 8), 3.0))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        prepare(f"image:{tmp_path / 'flt.npy'}", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_captions_name_the_digit_and_carry_information(tmp_path):
    """Each caption is its image's label in words; a per-pixel model conditioned on the caption beats the
    unconditional one on held-out images (mutual information > 0, Henighan sec. 4)."""
    from scalinglab.data.images import WORDS, _digits

    px, labels = _digits()
    label_of = {p.reshape(-1).astype(np.uint8).tobytes(): y for p, y in zip(px, labels, strict=True)}
    cap = open_dataset(prepare("image:digits8-caption", tmp_path / "cap").path)
    chars = {v: k for k, v in cap.meta["special_tokens"]["chars"].items()}

    def split(s):
        r = np.asarray(cap.tokens(s)).reshape(-1, 71)
        words = ["".join(chars.get(t, "") for t in row[1:6]) for row in r]
        return r[:, 7:], words

    tr_px, tr_words = split("train")
    te_px, te_words = split("test")
    for img, w in zip(te_px, te_words, strict=True):
        assert w == WORDS[label_of[img.astype(np.uint8).tobytes()]]
    # per-pixel categorical models (add-one smoothing), nats per image on the test split
    def nll(train_px, test_px):
        counts = np.stack([(train_px == v).sum(0) for v in range(17)]) + 1.0
        logp = np.log(counts / counts.sum(0))
        return -logp[test_px, np.arange(64)].sum(1)

    tr_lab = np.array([WORDS.index(w) if w else -1 for w in tr_words])
    te_lab = np.array([WORDS.index(w) for w in te_words])
    uncond = nll(tr_px, te_px).mean()
    cond = sum(nll(tr_px[tr_lab == y], te_px[te_lab == y]).sum() for y in range(10)) / len(te_px)
    assert uncond - cond > 1.0  # nats per image: the caption tells the model which digit to draw


def test_image_folder_rewritten_in_place_is_rebuilt(tmp_path):
    """Overwriting a folder's images (same names) changes neither the folder's size nor its mtime; the cache
    must still see the new pixels (a new build and a new fingerprint), not serve the old ones."""
    import os

    from PIL import Image

    from scalinglab.data import ensure_dataset

    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)

    def write(lo: int, hi: int) -> None:
        for i in range(40):
            Image.fromarray(rng.integers(lo, hi, (8, 8), dtype=np.uint8)).save(d / f"{i:02d}.png")

    write(0, 128)
    first = open_dataset(ensure_dataset(f"image:{d},levels=16"))
    mtime = os.stat(d).st_mtime_ns
    write(128, 256)  # brighter images, same file names
    assert os.stat(d).st_mtime_ns == mtime
    second = open_dataset(ensure_dataset(f"image:{d},levels=16"))
    assert second.path != first.path and second.fingerprint != first.fingerprint
    px = np.asarray(second.tokens("train"))
    assert px[px < 16].min() >= 8  # every pixel is from the new, bright images (levels 8..15)


def test_unreadable_image_inputs_are_clear_errors(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="a.png: not a readable image"):
        prepare(f"image:{tmp_path / 'imgs'}", tmp_path / "o1")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not a readable numeric .npy"):
        prepare(f"image:{tmp_path / 'obj.npy'}", tmp_path / "o2")

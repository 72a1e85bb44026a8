import pytest

from lang_seg import LangSegError, NetOptions
from lang_seg.config import BACKBONES
from lang_seg.labels import ade20k_labels, check_labels, parse_labels, read_label_file, tokenize


def test_ade20k_label_file_has_150_classes_first_names():
    labels = ade20k_labels()
    assert len(labels) == 150
    assert labels[:3] == ["wall", "building", "sky"]  # 'building;edifice' -> 'building'
    assert labels[-1] == "flag"
    assert labels.count("screen") == 2  # ADE20K repeats a name; the list keeps both indices


def test_parse_labels_forms(tmp_path):
    assert parse_labels("plant, grass,cat ,stone,other") == ["plant", "grass", "cat", "stone", "other"]
    assert len(parse_labels("default")) == 150
    f = tmp_path / "labels.txt"
    f.write_text("sea\nbeach\n\nother\n")
    assert parse_labels(str(f)) == ["sea", "beach", "other"]
    assert read_label_file(f) == ["sea", "beach", "other"]


@pytest.mark.parametrize(
    "src, message",
    [("", "empty label"), ("cat,,dog", "empty label"), ("cat,dog,cat", "appears twice"), (" , ", "empty label")],
)
def test_bad_label_sets(src, message):
    with pytest.raises(LangSegError, match=message):
        parse_labels(src)


def test_empty_list_and_plain_string():
    with pytest.raises(LangSegError, match="is empty"):
        check_labels([])
    with pytest.raises(LangSegError, match="list of strings"):
        check_labels("cat,dog")


def test_tokenize_truncates_long_labels_with_warning():
    long_label = " ".join(["word"] * 100)
    with pytest.warns(UserWarning, match="truncated"):
        tokens = tokenize(["cat", long_label])
    assert tokens.shape == (2, 77)
    assert int(tokens[1, -1]) == int(tokens[0].max())  # ends with the end-of-text token


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(backbone="vit_h14"), "unknown backbone 'vit_h14'"),
        (dict(readout="mean"), "unknown readout"),
        (dict(activation="gelu"), "unknown activation"),
        (dict(arch_option=3), "unknown arch_option"),
        (dict(arch_option=1, block_depth=0), "needs block_depth"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(LangSegError, match=message):
        NetOptions(**kwargs)


def test_backbone_configs_match_upstream_hooks():
    assert BACKBONES["clip_vitl16_384"].hooks == (5, 11, 17, 23)
    assert BACKBONES["clipRN50x16_vitl16_384"].hooks == (5, 11, 17, 23)
    assert BACKBONES["clip_vitb32_384"].hooks == (2, 5, 8, 11)
    assert BACKBONES["clipRN50x16_vitl16_384"].text.embed_dim == 768
    assert BACKBONES["clip_vitb32_384"].reassemble_features == (96, 192, 384, 768)


def test_text_features_are_cached_per_label_set():
    """Alternating label sets (two users of the browser demo) do not re-encode: the last few sets are kept."""
    from lang_seg.model import TEXT_CACHE_SIZE, SegModel
    from lang_seg import NetOptions

    class Counting(SegModel):
        encoded = []

        def _encode_text(self, labels):
            self.encoded.append(tuple(labels))
            return len(self.encoded)

    model = Counting(NetOptions(backbone="tiny_vitb32"), "cpu")
    a, b = ["cat", "dog"], ["sea", "beach", "other"]
    assert [model.text_features(x) for x in (a, b, a, b, a)] == [1, 2, 1, 2, 1]
    assert model.encoded == [tuple(a), tuple(b)]
    for i in range(TEXT_CACHE_SIZE):  # older sets fall out, least recently used first
        model.text_features([f"label{i}"])
    assert model.text_features(a) == len(model.encoded) and len(model.encoded) == TEXT_CACHE_SIZE + 3

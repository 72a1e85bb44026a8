"""Upstream's few-shot scoring (lang_seg.fewshot): mIoU and FB-IoU by hand on tiny masks, and against upstream's
own Evaluator and AverageMeter (fixture by tests/fixtures/make_upstream_zs_fixtures.py)."""
import numpy as np
import pytest

from lang_seg import LangSegError
from lang_seg.fewshot import FewShotMetric, classify_prediction, episode_predictions, fold_classes

from .helpers import FIXTURES


def test_hand_computed_miou_and_fb_iou():
    metric = FewShotMetric("pascal", [3, 5, 7])  # class 7: in no episode
    # class 3: foreground 1 of 3 (union), background 3 of 5
    metric.add([[[1, 1, 0], [0, 0, 0]]], [[[1, 0, 0], [1, 0, 0]]], [3])
    # class 3 again, the top-left pixel ignored: foreground 1 of 2, background 1 of 2
    metric.add([[[1, 1], [1, 0]]], [[[0, 1], [0, 0]]], [3], ignore=[[[1, 0], [0, 0]]])
    # class 5: no foreground predicted: foreground 0 of 1, background 3 of 4
    metric.add([[[0, 0], [0, 0]]], [[[0, 1], [0, 0]]], [5])
    np.testing.assert_allclose(metric.class_iou(), [[4 / 7, 3 / 4, 0], [2 / 5, 0, 0]])
    assert metric.miou() == pytest.approx(100 * (2 / 5 + 0 + 0) / 3)  # 13.33: the class in no episode counts 0
    assert metric.fb_iou() == pytest.approx(100 * ((7 / 11) + (2 / 6)) / 2)  # 48.48
    assert list(metric.episodes[[3, 5, 7]]) == [2, 1, 0]


def test_values_outside_zero_and_one_are_not_counted():
    inter, union = classify_prediction([[[1, 255], [0, 1]]], [[[1, 255], [2, 0]]])
    assert inter.tolist() == [[0], [1]] and union.tolist() == [[2], [2]]  # torch.histc(bins=2, 0..1) drops 255, 2


def test_matches_upstreams_evaluator_and_average_meter():
    upstream = np.load(FIXTURES / "upstream_zs_readers_metric.npz")
    metric = FewShotMetric("pascal", fold_classes("pascal", 2, "test"))
    for k in range(len(upstream["metric_prediction"])):
        prediction, target, ignore, class_id = (upstream[f"metric_{n}"][k] for n in ("prediction", "target", "ignore",
                                                                                    "class_id"))
        inter, union = classify_prediction(prediction, target, ignore)
        np.testing.assert_array_equal(inter, upstream["metric_inter"][k])
        np.testing.assert_array_equal(union, upstream["metric_union"][k])
        metric.update(inter, union, class_id)
    assert metric.miou() == pytest.approx(float(upstream["metric_miou"]), abs=1e-4)
    assert metric.fb_iou() == pytest.approx(float(upstream["metric_fb_iou"]), abs=1e-4)
    assert 10 < metric.miou() < 60  # random masks: neither trivial nor perfect


def test_fold_classes_are_upstreams():
    assert fold_classes("pascal", 1, "test") == [5, 6, 7, 8, 9]
    assert len(fold_classes("pascal", 1, "trn")) == 15 and 5 not in fold_classes("pascal", 1, "trn")
    assert fold_classes("coco", 3, "val") == list(range(3, 80, 4))
    assert fold_classes("fss", 2, "test") == list(range(760, 1000))  # FSS-1000 has no folds
    with pytest.raises(LangSegError, match="fold -1 does not exist"):
        fold_classes("coco", -1, "val")
    with pytest.raises(LangSegError, match="unknown benchmark 'c2p'"):
        FewShotMetric("c2p", [0])


class Recorder:
    """A model whose logits make the foreground the pixels above a per-label threshold; records its calls."""

    def __init__(self):
        self.calls = []

    def logits(self, images, labels):
        self.calls.append((len(images), tuple(labels)))
        score = images[:, 0] - (0.5 if labels[1] == "dog" else -0.5)
        return np.stack([np.zeros_like(score), score], axis=1)


def test_episode_predictions_score_each_image_on_its_own_pair():
    images = np.stack([np.full((3, 2, 2), v, np.float32) for v in (0.0, 0.0, 1.0)])
    model = Recorder()
    masks = episode_predictions(model, images, ["dog", "cat", "dog"])
    assert model.calls == [(2, ("others", "dog")), (1, ("others", "cat"))]  # one forward per class of the batch
    assert masks[:, 0, 0].tolist() == [0, 1, 1]

"""AP over resampled image sets, bootstrap intervals, and the label-free AP against a reference
model's own detections."""
import numpy as np
import pytest

pytest.importorskip("pycocotools")

from edgepose.evaluate import (KeypointEval, bootstrap, coco_keypoint_stats, interval, load_coco,
                               merge_coco, pseudo_ground_truth, results_entries)


def _people(rng, n_img=12):
    """Random COCO-17 people (some keypoints missing) in n_img 640x480 images."""
    poses = []
    for _ in range(n_img):
        k = rng.integers(0, 4)
        p = np.zeros((k, 17, 3))
        for j in range(k):
            c = rng.uniform([80, 80], [560, 400])
            p[j, :, :2] = c + rng.normal(0, 40, (17, 2))
            p[j, :, 2] = rng.random(17) > 0.2
        poses.append(p)
    return poses


def _perturb(rng, poses, px=3.0, drop=0.1):
    out, scores = [], []
    for p in poses:
        q = p.copy()
        q[:, :, :2] += rng.normal(0, px, q[:, :, :2].shape)
        q[:, :, 2] = np.where(rng.random(q.shape[:2]) < drop, 0, q[:, :, 2])
        out.append(q)
        scores.append(rng.uniform(0.2, 1.0, len(q)))
    return out, scores


def test_keypoint_eval_equals_cocoeval_and_bootstraps():
    rng = np.random.default_rng(0)
    ref = _people(rng)
    sizes = [(480, 640)] * len(ref)
    gt_doc = pseudo_ground_truth(ref, sizes)
    gt = load_coco(gt_doc)
    ids = sorted(gt.getImgIds())
    q, s = _perturb(rng, ref)
    res = results_entries(q, s)
    ke = KeypointEval(gt, res, ids)
    assert ke.ap() == pytest.approx(coco_keypoint_stats(gt, res, ids)["AP"], abs=1e-12)
    # a subset and a resample with repeats: the same as COCOeval on that multiset of images
    sub = [0, 2, 3, 5]
    assert ke.ap(sub) == pytest.approx(coco_keypoint_stats(gt, res, [ids[i] for i in sub])["AP"], abs=1e-12)
    samples = bootstrap(ke.ap, len(ids), 300)
    lo, hi = interval(samples)
    assert lo <= ke.ap() <= hi and hi - lo > 0
    # the reference scored against itself: AP 1.0 on every resample
    self_res = results_entries(ref, [np.ones(len(p)) for p in ref])
    ks = KeypointEval(gt, self_res, ids)
    assert ks.ap() == pytest.approx(1.0) and interval(bootstrap(ks.ap, len(ids), 50)) == (1.0, 1.0)
    # nobody found: AP 0
    assert KeypointEval(gt, [], ids).ap() == 0.0


def test_pseudo_ground_truth_ignores_unsure_reference_people():
    rng = np.random.default_rng(1)
    ref = _people(rng, 6)
    scores = [np.linspace(0.1, 0.9, len(p)) for p in ref]
    doc = pseudo_ground_truth(ref, [(480, 640)] * 6, scores=scores, min_score=0.4)
    for a in doc["annotations"]:
        assert a["area"] > 0 and a["num_keypoints"] >= 1
    crowd = [a for a in doc["annotations"] if a["iscrowd"]]
    n_low = sum(int((s < 0.4).sum()) for s in scores)
    assert len(crowd) == n_low
    # a detection on an ignored (unsure) reference person is neither a hit nor a false positive
    gt = load_coco(doc)
    only_sure = [(p[s >= 0.4], s[s >= 0.4]) for p, s in zip(ref, scores)]
    with_unsure = results_entries(ref, scores)
    sure_only = results_entries([p for p, _ in only_sure], [s for _, s in only_sure])
    ids = sorted(gt.getImgIds())
    assert KeypointEval(gt, with_unsure, ids).ap() == pytest.approx(KeypointEval(gt, sure_only, ids).ap())


def test_merge_coco_pools_sets(tmp_path):
    import json
    docs = []
    for k in range(2):
        d = tmp_path / ("set%d" % k)
        d.mkdir()
        doc = {"images": [{"id": 7, "file_name": "a.jpg", "width": 10, "height": 10}],
               "annotations": [{"id": 3, "image_id": 7, "category_id": 1, "num_keypoints": 1,
                                "keypoints": [1, 1, 2] + [0] * 48, "area": 10, "bbox": [0, 0, 2, 2], "iscrowd": 0}],
               "categories": [{"id": 1, "name": "person"}]}
        (d / "ann.json").write_text(json.dumps(doc))
        docs.append((str(d / "ann.json"), str(d)))
    m = merge_coco(docs)
    assert [i["id"] for i in m["images"]] == [1, 2] and [a["image_id"] for a in m["annotations"]] == [1, 2]
    assert m["images"][1]["file_name"] == str(tmp_path / "set1" / "a.jpg")


def test_one_sigma_rule():
    """OKS NMS (top-down) and the INT8 gate's matching use the same sigmas: COCO-17's through
    the schema's mapping, the mean COCO sigma for a keypoint without one (CMU-18's neck)."""
    from edgepose.metadata import ModelMeta
    from edgepose.schema import (CMU18_KEYPOINTS, CMU18_LIMBS, CMU18_TO_COCO17, COCO17_SIGMAS,
                                 DEFAULT_OKS_SIGMA, oks_sigmas)
    from edgepose.exporters.int8.gate import _sigmas
    s = oks_sigmas(18, CMU18_TO_COCO17)
    assert s[1] == DEFAULT_OKS_SIGMA == pytest.approx(np.mean(COCO17_SIGMAS), abs=1e-4)   # the neck
    assert s[0] == COCO17_SIGMAS[0] and s[2] == COCO17_SIGMAS[6]    # nose; r_shoulder = COCO 6
    meta = ModelMeta({"family": "bottomup", "input": {"name": "x", "layout": "NCHW", "height": 8, "width": 8,
                                                      "channel_order": "BGR", "mean": [0] * 3, "std": [1] * 3},
                      "outputs": {"heatmaps": {"name": "h"}, "pafs": {"name": "p"}}, "stride": 8,
                      "keypoints": CMU18_KEYPOINTS, "limbs": [list(l) for l in CMU18_LIMBS],
                      "to_coco17": list(CMU18_TO_COCO17)})
    np.testing.assert_array_equal(_sigmas(meta), s)

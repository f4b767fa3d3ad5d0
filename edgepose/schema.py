"""Keypoint schemas: names, limbs (PAF tables), skeletons, flip pairs and conversions.

Index tables here are data shared by export (embedded in model metadata), decoding and drawing.
"""
# --- CMU-18 (OpenPose, Lightweight OpenPose, tf-pose) -------------------------------------
CMU18_KEYPOINTS = [
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
]

# (part_a, part_b, paf_x, paf_y): PAF channel indices are within the 38 PAF channels.
# Identical to Lightweight OpenPose's BODY_PARTS_KPT_IDS / BODY_PARTS_PAF_IDS.
CMU18_LIMBS = [
    (1, 2, 12, 13), (1, 5, 20, 21), (2, 3, 14, 15), (3, 4, 16, 17), (5, 6, 22, 23),
    (6, 7, 24, 25), (1, 8, 0, 1), (8, 9, 2, 3), (9, 10, 4, 5), (1, 11, 6, 7),
    (11, 12, 8, 9), (12, 13, 10, 11), (1, 0, 28, 29), (0, 14, 30, 31), (14, 16, 34, 35),
    (0, 15, 32, 33), (15, 17, 36, 37), (2, 16, 18, 19), (5, 17, 26, 27),
]

# COCO-17 index -> CMU-18 index (the neck has no COCO keypoint).
CMU18_TO_COCO17 = [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]

CMU18_FLIP_PAIRS = [(2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17)]

# --- COCO-17 ---------------------------------------------------------------------------------
COCO17_KEYPOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
# Skeleton for drawing (0-based).
COCO17_SKELETON = [
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
]
COCO17_FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
# Per-keypoint OKS sigmas (pycocotools).
COCO17_SIGMAS = [
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
    0.087, 0.087, 0.089, 0.089,
]

# --- MPII-16 -----------------------------------------------------------------------------------
MPII16_KEYPOINTS = [
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis",
    "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder",
    "left_shoulder", "left_elbow", "left_wrist",
]
MPII16_SKELETON = [
    (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (7, 12), (12, 11),
    (11, 10), (7, 13), (13, 14), (14, 15),
]
MPII16_FLIP_PAIRS = [(0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)]
# COCO-17 index -> MPII-16 index (-1: no MPII joint for the face keypoints)
MPII16_TO_COCO17 = [-1, -1, -1, -1, -1, 13, 12, 14, 11, 15, 10, 3, 2, 4, 1, 5, 0]

# --- BlazePose-33 (MediaPipe Pose landmarks) --------------------------------------------------------
BLAZEPOSE33_KEYPOINTS = [
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
]
BLAZEPOSE33_SKELETON = [
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13),
    (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20),
    (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
    (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
]
BLAZEPOSE33_FLIP_PAIRS = [(1, 4), (2, 5), (3, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 18),
                          (19, 20), (21, 22), (23, 24), (25, 26), (27, 28), (29, 30), (31, 32)]
BLAZEPOSE33_TO_COCO17 = [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]

SCHEMAS = {
    "cmu18": {
        "keypoints": CMU18_KEYPOINTS,
        "skeleton": [(a, b) for a, b, _, _ in CMU18_LIMBS[:17]],
        "limbs": CMU18_LIMBS,
        "flip_pairs": CMU18_FLIP_PAIRS,
        "to_coco17": CMU18_TO_COCO17,
    },
    "coco17": {
        "keypoints": COCO17_KEYPOINTS,
        "skeleton": COCO17_SKELETON,
        "limbs": [],
        "flip_pairs": COCO17_FLIP_PAIRS,
        "to_coco17": list(range(17)),
    },
    "blazepose33": {
        "keypoints": BLAZEPOSE33_KEYPOINTS,
        "skeleton": BLAZEPOSE33_SKELETON,
        "limbs": [],
        "flip_pairs": BLAZEPOSE33_FLIP_PAIRS,
        "to_coco17": BLAZEPOSE33_TO_COCO17,
    },
    "mpii16": {
        "keypoints": MPII16_KEYPOINTS,
        "skeleton": MPII16_SKELETON,
        "limbs": [],
        "flip_pairs": MPII16_FLIP_PAIRS,
        "to_coco17": MPII16_TO_COCO17,
    },
}


def reorder_schema(tables: dict, names) -> dict:
    """The schema's tables for a model whose channels hold the same keypoints in another order
    (``names``: a permutation of ``tables["keypoints"]``): every index re-pointed by name. The
    limb table is kept only when the order is unchanged (its PAF channels are the model's)."""
    old = list(tables["keypoints"])
    if sorted(old) != sorted(names) or len(set(names)) != len(names):
        raise ValueError("keypoints must be a permutation of the schema's %d names" % len(old))
    pos = {n: i for i, n in enumerate(names)}
    new = {o: pos[n] for o, n in enumerate(old)}
    out = dict(tables)
    out["keypoints"] = list(names)
    out["skeleton"] = [(new[a], new[b]) for a, b in tables.get("skeleton") or []]
    out["flip_pairs"] = [(new[a], new[b]) for a, b in tables.get("flip_pairs") or []]
    t = tables.get("to_coco17")
    out["to_coco17"] = None if t is None else [new[i] if i is not None and i >= 0 else -1 for i in t]
    if list(names) != old:
        out["limbs"] = [(new[a], new[b], px, py) for a, b, px, py in tables.get("limbs") or []]
    return out


# OKS sigma of a keypoint with no COCO-17 counterpart (CMU-18's neck, custom schemas): the
# mean of the COCO-17 sigmas
DEFAULT_OKS_SIGMA = round(sum(COCO17_SIGMAS) / len(COCO17_SIGMAS), 4)


def oks_sigmas(num_keypoints: int, to_coco17=None):
    """Per-keypoint OKS sigmas of a schema: COCO-17's through ``to_coco17`` (COCO index ->
    schema index), :data:`DEFAULT_OKS_SIGMA` for the rest. THE sigma rule (OKS NMS, the INT8
    gate's matching)."""
    import numpy as np
    sig = np.full(int(num_keypoints), DEFAULT_OKS_SIGMA, np.float64)
    for ci, si in enumerate(to_coco17 or []):
        if si is not None and 0 <= int(si) < num_keypoints and ci < len(COCO17_SIGMAS):
            sig[int(si)] = COCO17_SIGMAS[ci]
    return sig


def get_schema(name: str) -> dict:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise ValueError("unknown keypoint schema %r (known: %s)" % (name, ", ".join(SCHEMAS)))

"""J and F against hand-computed values and a frame-by-frame port of the DAVIS-2017 reference."""

import cv2
import numpy as np
import pytest
from skimage.morphology import disk

from mora.metrics import (
    boundary_f,
    boundary_tolerance,
    empty_prediction_scores,
    jaccard,
    jaccard_and_boundary_f,
    jaccard_and_boundary_f_with_baseline,
)


def ref_seg2bmap(seg):
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def ref_f(fg, gt, bound_th=0.008):
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(fg.shape))
    fb, gb = ref_seg2bmap(fg), ref_seg2bmap(gt)
    fd = cv2.dilate(fb.astype(np.uint8), disk(bound_pix).astype(np.uint8))
    gd = cv2.dilate(gb.astype(np.uint8), disk(bound_pix).astype(np.uint8))
    n_fg, n_gt = np.sum(fb), np.sum(gb)
    if n_fg == 0 and n_gt > 0:
        p, r = 1, 0
    elif n_fg > 0 and n_gt == 0:
        p, r = 0, 1
    elif n_fg == 0 and n_gt == 0:
        p, r = 1, 1
    else:
        p = np.sum(fb * gd) / float(n_fg)
        r = np.sum(gb * fd) / float(n_gt)
    return 0 if p + r == 0 else 2 * p * r / (p + r)


def ref_j(gt, pred):
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = np.sum(gt | pred)
    return 1.0 if np.isclose(union, 0) else np.sum(gt & pred) / union


def check_against_reference(gt, pred, bound_th=0.008):
    j, f = jaccard_and_boundary_f(gt, pred, bound_th)
    jr = np.array([ref_j(g, p) for g, p in zip(gt, pred)])
    fr = np.array([ref_f(p, g, bound_th) for g, p in zip(gt, pred)])
    assert j.dtype == np.float64 and f.dtype == np.float64 and j.shape == (len(gt),)
    np.testing.assert_allclose(j, jr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f, fr, rtol=0, atol=1e-12)
    return j, f


def box(h, w, y0, y1, x0, x1, value=1):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = value
    return m


def test_empty_and_full_cases():
    z = np.zeros((40, 50), np.uint8)
    full = np.ones((40, 50), np.uint8)
    b = box(40, 50, 10, 20, 10, 30)
    assert jaccard(z, z) == 1.0 and boundary_f(z, z) == 1.0
    assert jaccard(b, z) == 0.0 and boundary_f(b, z) == 0.0
    assert jaccard(z, b) == 0.0 and boundary_f(z, b) == 0.0
    assert jaccard(full, full) == 1.0 and boundary_f(full, full) == 1.0
    # a full frame has no boundary: against an empty prediction F is 1 (both boundaries empty), J 0
    assert jaccard(full, z) == 0.0 and boundary_f(full, z) == 1.0
    missing_col = full.copy()
    missing_col[:, -1] = 0
    assert jaccard(full, missing_col) == pytest.approx(49 / 50)
    assert boundary_f(full, missing_col) == 0.0  # GT has no boundary, prediction has one
    je, fe = empty_prediction_scores(np.stack([z, b, full]))
    np.testing.assert_array_equal(je, [1, 0, 0])
    np.testing.assert_array_equal(fe, [1, 0, 1])


def test_single_pixel_and_values():
    a = box(30, 30, 10, 11, 10, 11, value=255)
    b = box(30, 30, 10, 11, 10, 11, value=2)
    assert jaccard(a, b) == 1.0 and boundary_f(a, b) == 1.0
    check_against_reference(a[None], box(30, 30, 12, 13, 20, 21)[None])
    # floats: any non-zero value is foreground
    assert jaccard(a.astype(float) * 0.3, b) == 1.0


def test_shift_at_tolerance_and_one_more():
    H, W = 480, 854
    assert boundary_tolerance(H, W) == 8 and boundary_tolerance(720, 1280) == 12
    gt = box(H, W, 100, 300, 200, 500)
    at_tol = box(H, W, 100, 300, 208, 508)
    beyond = box(H, W, 100, 300, 209, 509)
    assert boundary_f(gt, at_tol) == 1.0
    assert 0.5 < boundary_f(gt, beyond) < 1.0  # vertical edges 9 px apart no longer match
    check_against_reference(np.stack([gt, gt]), np.stack([at_tol, beyond]))


def test_border_touching_and_hand_counts():
    # a 4x4 box in the corner: the image edge creates no boundary (the box's sides along the border are
    # not boundary pixels, its other sides are, border pixels included)
    m = box(10, 10, 0, 4, 0, 4)
    shifted = box(10, 10, 0, 4, 1, 5)
    check_against_reference(m[None], shifted[None], bound_th=1)
    # by hand: GT boundary = column 3 (rows 0-3) + row 3 (cols 0-2): 7 px; prediction boundary =
    # columns 0 and 4 (rows 0-3) + row 3 (cols 1-3): 11 px. With a 1-px cross every GT pixel matches
    # (R = 1); (0, 0) and (1, 0) are 2+ px from the GT boundary (P = 9/11), so F = 0.9.
    assert boundary_f(m, shifted, bound_th=1) == pytest.approx(0.9, abs=1e-15)
    edge = box(12, 70, 0, 12, 60, 70)  # touches right, top and bottom edges, crosses a word boundary
    check_against_reference(edge[None], box(12, 70, 0, 12, 63, 70)[None])


@pytest.mark.parametrize("shape", [(3, 17, 23), (4, 64, 64), (3, 65, 130), (2, 480, 854), (1, 127, 192)])
def test_random_masks_match_reference(shape):
    rng = np.random.default_rng(sum(shape))
    T, H, W = shape
    yy, xx = np.mgrid[:H, :W]
    gt = np.zeros(shape, np.uint8)
    for t in range(T):
        cy, cx, a, b = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(2, H / 2), rng.uniform(2, W / 2)
        gt[t] = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1
    noise = rng.random(shape) < 0.02
    pred = np.where(noise, 1 - gt, gt) * rng.choice([1, 2, 255], size=shape).astype(np.uint8)
    pred[0] = np.roll(gt[0], (3, -5), axis=(0, 1))
    check_against_reference(gt, pred)
    check_against_reference(gt, (rng.random(shape) < 0.5).astype(np.uint8))


def test_stack_equals_frames_and_errors(monkeypatch):
    from mora.metrics import boundary as bnd

    monkeypatch.setattr(bnd, "_CHUNK_PIXELS", 8 * 20 * 30)  # chunks of 8 frames: 8 full ones, then 6
    rng = np.random.default_rng(1)
    gt = (rng.random((70, 20, 30)) < 0.3).astype(np.uint8)
    pred = (rng.random((70, 20, 30)) < 0.3).astype(np.uint8)
    j, f = jaccard(gt, pred), boundary_f(gt, pred)
    assert [jaccard(g, p) for g, p in zip(gt, pred)] == list(j)
    assert [boundary_f(g, p) for g, p in zip(gt, pred)] == list(f)
    with pytest.raises(ValueError, match="shape"):
        jaccard(gt, pred[:, :-1])
    with pytest.raises(ValueError, match="integer"):
        boundary_f(gt, pred, bound_th=2.5)


def noise_pair(rng, shape, p=0.5):
    return (rng.random(shape) < p).astype(np.uint8), (rng.random(shape) < p).astype(np.uint8)


@pytest.mark.parametrize("shape", [(2, 480, 854), (3, 31, 47), (2, 63, 65), (2, 97, 129), (1, 5, 200)])
def test_noise_masks_match_reference(shape):
    # salt-and-pepper masks: most pixels are boundary pixels, every window and row offset is used
    rng = np.random.default_rng(shape[1] * shape[2])
    for p in (0.5, 0.05):
        check_against_reference(*noise_pair(rng, shape, p))


@pytest.mark.parametrize("bound_th", [1, 2, 3, 5, 12, 17, 23, 24, 25, 31, 40])
def test_radii_match_reference(bound_th):
    # windows for r <= MAX_WINDOW_RADIUS (24), KD-tree above; widths below, at and above one word
    rng = np.random.default_rng(bound_th)
    for shape in ((2, 60, 50), (2, 40, 64), (2, 41, 131)):
        gt, pred = noise_pair(rng, shape, 0.1)
        check_against_reference(gt, pred, bound_th=bound_th)
        T, H, W = shape
        y0, x0 = H // 4, W // 4
        boxes = [box(H, W, y0, y0 + H // 3, x0, x0 + W // 3) for _ in range(T)]
        check_against_reference(
            np.stack(boxes), np.stack(boxes[:1] + [b[::-1, ::-1] for b in boxes[1:]]), bound_th
        )


@pytest.mark.parametrize("size", [(480, 854), (720, 1280), (37, 301)])
def test_shifts_of_exactly_r_and_r_plus_one(size):
    H, W = size
    r = boundary_tolerance(H, W)
    gt = box(H, W, H // 4, H // 2, W // 4, W // 2)
    shifted = [np.roll(gt, s, axis=a) for a in (0, 1) for s in (r, r + 1, -r, -r - 1)]
    # diagonal shifts whose length is just inside / just outside the disk
    dy = r // 2
    dx_in = int(np.floor(np.sqrt(r * r - dy * dy)))
    shifted += [np.roll(gt, (dy, dx_in), axis=(0, 1)), np.roll(gt, (dy, dx_in + 1), axis=(0, 1))]
    _, f = check_against_reference(np.stack([gt] * len(shifted)), np.stack(shifted))
    assert f[0] == 1.0 and f[1] < 1.0


def test_single_pixels_at_disk_edge():
    # one-pixel masks: boundary = 2x2 block; offsets on and just beyond the disk, across word/window edges
    H, W, r = 40, 300, 8
    pairs = []
    for x in (3, 50, 55, 63, 64, 70, 120, 290):
        for dy, dx in ((0, r), (0, r + 1), (r, 0), (r + 1, 0), (5, 6), (5, 7), (-6, -5), (-7, -5)):
            g = np.zeros((H, W), np.uint8)
            p = np.zeros((H, W), np.uint8)
            g[20, x] = 1
            p[20 + dy, min(W - 1, max(0, x + dx))] = 1
            pairs.append((g, p))
    gt, pred = map(np.stack, zip(*pairs))
    check_against_reference(gt, pred, bound_th=r)


def test_window_and_kd_paths_agree():
    from mora.metrics import boundary as bnd

    rng = np.random.default_rng(7)
    gt, pred = noise_pair(rng, (3, 70, 150), 0.2)
    counts = {}
    for name, limit in (("windows", bnd.MAX_WINDOW_RADIUS), ("kd", 0)):
        old = bnd.MAX_WINDOW_RADIUS
        bnd.MAX_WINDOW_RADIUS = limit
        try:
            counts[name] = boundary_f(gt, pred, bound_th=6)
        finally:
            bnd.MAX_WINDOW_RADIUS = old
    np.testing.assert_array_equal(counts["windows"], counts["kd"])


def test_memory_does_not_grow_with_videos():
    import tracemalloc

    rng = np.random.default_rng(3)
    gt, pred = noise_pair(rng, (12, 120, 200), 0.01)
    peaks = []
    for n_videos in (2, 8):
        tracemalloc.start()
        for _ in range(n_videos):
            jaccard_and_boundary_f(gt, pred)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] <= peaks[0] * 1.1


def test_chunks_with_a_shorter_last_one(monkeypatch):
    # frames are packed a chunk at a time into reused slots; a shorter last chunk must not see the data
    # of the previous one (frames of odd size, so frames and rows are not word-aligned)
    from mora.metrics import boundary as bnd

    monkeypatch.setattr(bnd, "_CHUNK_PIXELS", 3 * 37 * 53)
    rng = np.random.default_rng(11)
    gt, pred = noise_pair(rng, (7, 37, 53), 0.3)  # chunks of 3, 3 and 1 frames
    gt[-1] = 0
    pred[-1, 20:, :] = 1
    check_against_reference(gt, pred)
    je, fe = empty_prediction_scores(gt)
    empty = np.zeros_like(gt[0])
    np.testing.assert_array_equal(je, [ref_j(g, empty) for g in gt])
    np.testing.assert_array_equal(fe, [ref_f(empty, g) for g in gt])


def test_scores_with_baseline_equal_the_separate_calls():
    rng = np.random.default_rng(5)
    gt, pred = noise_pair(rng, (5, 33, 70), 0.2)
    gt[1] = 0  # empty ground truth: the empty prediction scores J = F = 1 there
    gt[2] = 1  # full frame: no boundary, F = 1 but J = 0
    j, f, je, fe = jaccard_and_boundary_f_with_baseline(gt, pred)
    j2, f2 = jaccard_and_boundary_f(gt, pred)
    je2, fe2 = empty_prediction_scores(gt)
    for a, b in ((j, j2), (f, f2), (je, je2), (fe, fe2)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(je, [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(fe, [0, 1, 1, 0, 0])


def test_degenerate_shapes():
    rng = np.random.default_rng(2)
    for shape in ((4, 1, 1), (3, 1, 70), (3, 70, 1), (2, 1, 64)):
        for th in (0.008, 1, 3):
            check_against_reference(*noise_pair(rng, shape, 0.5), bound_th=th)
    j, f = jaccard_and_boundary_f(np.zeros((0, 10, 10)), np.zeros((0, 10, 10)))
    assert j.shape == f.shape == (0,)
    assert empty_prediction_scores(np.zeros((0, 10, 10)))[0].shape == (0,)


def test_kd_path_across_chunks(monkeypatch):
    from mora.metrics import boundary as bnd

    monkeypatch.setattr(bnd, "_CHUNK_PIXELS", 2 * 45 * 70)
    rng = np.random.default_rng(4)
    gt, pred = noise_pair(rng, (5, 45, 70), 0.1)  # chunks of 2, 2 and 1 frames
    check_against_reference(gt, pred, bound_th=30)  # radius above MAX_WINDOW_RADIUS: KD-tree

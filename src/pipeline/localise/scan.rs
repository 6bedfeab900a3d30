//! Multi-scale sliding-window search: every scale of the image is resampled so that the
//! window is 64×64, block histograms are computed once per scale and shared by all windows
//! (8-pixel stride), and each window is scored with the SVM as it is and mirrored.

use crate::pipeline::localise::hog::{
    BlockWeights, Gradients, BLOCKS_PER_SIDE, BLOCK_LEN, STRIDE, WINDOW,
};
use crate::pipeline::localise::plane::Plane;
use crate::pipeline::localise::svm::{dot, Svm};

/// A scored square window in working-image coordinates.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub cx: f32,
    pub cy: f32,
    pub side: f32,
    pub score: f32,
    /// Scored with the mirrored model (looks like a knee on the image's right).
    pub mirrored: bool,
}

/// Window sides from `min_side` up to `max_side` (inclusive), a factor `ratio` apart.
pub fn sides(min_side: f32, max_side: f32, ratio: f32) -> Vec<f32> {
    let mut out = Vec::new();
    let mut s = max_side;
    while s >= min_side {
        out.push(s);
        s /= ratio;
    }
    out.reverse();
    out
}

/// All windows of side `side` at a stride of an eighth of the side, best orientation each.
pub fn scan_scale(work: &Plane, side: f32, table: &BlockWeights, out: &mut Vec<Candidate>) {
    let svm = Svm::get();
    let f = WINDOW as f32 / side;
    let (lw, lh) = (
        (work.width as f32 * f).round() as usize,
        (work.height as f32 * f).round() as usize,
    );
    if lw < WINDOW || lh < WINDOW {
        return;
    }
    let level = work.resized(lw, lh);
    let grads = Gradients::new(&level.pixels, lw, lh);
    let (nbx, nby) = ((lw - 16) / STRIDE + 1, (lh - 16) / STRIDE + 1);
    let mut blocks = Vec::with_capacity(nbx * nby);
    for by in 0..nby {
        for bx in 0..nbx {
            blocks.push(grads.block(bx * STRIDE, by * STRIDE, table));
        }
    }
    let (sx, sy) = (
        work.width as f32 / lw as f32,
        work.height as f32 / lh as f32,
    );
    for wy in 0..=(nby - BLOCKS_PER_SIDE) {
        for wx in 0..=(nbx - BLOCKS_PER_SIDE) {
            let (mut plain, mut mirrored) = (svm.bias, svm.bias);
            for bx in 0..BLOCKS_PER_SIDE {
                for by in 0..BLOCKS_PER_SIDE {
                    let block: &[f32; BLOCK_LEN] = &blocks[(wy + by) * nbx + wx + bx];
                    let k = bx * BLOCKS_PER_SIDE + by;
                    plain += dot(svm.block_weights(k, false), block);
                    mirrored += dot(svm.block_weights(k, true), block);
                }
            }
            let centre = (WINDOW / 2) as f32;
            out.push(Candidate {
                cx: ((wx * STRIDE) as f32 + centre) * sx,
                cy: ((wy * STRIDE) as f32 + centre) * sy,
                side,
                score: plain.max(mirrored),
                mirrored: mirrored > plain,
            });
        }
    }
}

/// Windows larger than the image's shorter side, centred across it and stepped by an eighth
/// of the side along the longer one (over its middle `1 - 2 * end` part); beyond the image
/// the window sees black, as around a limb in an uncut radiograph.
pub fn scan_oversized(work: &Plane, side: f32, end: f32) -> Vec<Candidate> {
    let margin = (side / 2.0).ceil() as usize;
    let padded = work.padded(margin, margin);
    let m = margin as f32;
    let (w, h) = (work.width as f32, work.height as f32);
    let tall = h >= w;
    let long = w.max(h);
    let steps = (long * (1.0 - 2.0 * end) / (side / 8.0)).floor() as usize;
    (0..=steps)
        .map(|i| {
            let along = long * end + i as f32 * side / 8.0;
            let (cx, cy) = if tall {
                (w / 2.0, along)
            } else {
                (along, h / 2.0)
            };
            let c = score_window(&padded, cx + m, cy + m, side);
            Candidate { cx, cy, ..c }
        })
        .collect()
}

/// Exact score of one window (resampled on its own, as the SVM was trained).
pub fn score_window(work: &Plane, cx: f32, cy: f32, side: f32) -> Candidate {
    let svm = Svm::get();
    let d = crate::pipeline::localise::hog::hog_descriptor(&work.window(
        cx,
        cy,
        side,
        WINDOW as u32,
        false,
    ));
    let (plain, mirrored) = (svm.score(&d, false), svm.score(&d, true));
    Candidate {
        cx,
        cy,
        side,
        score: plain.max(mirrored),
        mirrored: mirrored > plain,
    }
}

/// Local search around a candidate: shifts of a sixteenth of the side and scale steps of
/// about 6 %, repeated while the score improves.
pub fn refine(work: &Plane, start: Candidate) -> Candidate {
    let mut best = start;
    for _ in 0..4 {
        let mut improved = false;
        let step = best.side / 16.0;
        let base = best;
        for (dx, dy, ds) in [
            (-1.0, 0.0, 1.0),
            (1.0, 0.0, 1.0),
            (0.0, -1.0, 1.0),
            (0.0, 1.0, 1.0),
            (0.0, 0.0, 1.06),
            (0.0, 0.0, 1.0 / 1.06),
        ] {
            let c = score_window(
                work,
                base.cx + dx * step,
                base.cy + dy * step,
                base.side * ds,
            );
            if c.score > best.score {
                best = c;
                improved = true;
            }
        }
        if !improved {
            break;
        }
    }
    best
}

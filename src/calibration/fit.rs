//! Multinomial logistic regression with an L2 penalty, fitted by L-BFGS: the site head's fit.
//!
//! Minimises `(1/n) Σ −log softmax(x_i·W + b)[y_i] + (λ/2)‖W‖²` (the intercept is not penalised),
//! which is scikit-learn's `LogisticRegression(C = 1/(nλ))` objective divided by `C·n`: the same
//! minimiser, golden-tested against it. Convex and smooth, so L-BFGS with a backtracking line
//! search converges to the one optimum.

/// Training rows: `x` is row-major `n × d`, `y` the class of each row.
pub struct Samples<'a> {
    pub x: &'a [f64],
    pub y: &'a [u8],
    pub dims: usize,
    pub classes: usize,
}

impl Samples<'_> {
    fn rows(&self) -> usize {
        self.y.len()
    }
}

/// A fitted linear model: `w` row-major `d × k`, `b` per class.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub w: Vec<f64>,
    pub b: Vec<f64>,
    pub classes: usize,
    /// L-BFGS iterations taken, and whether the gradient fell below the tolerance.
    pub iterations: usize,
    pub converged: bool,
}

impl Linear {
    /// Class probabilities of one row.
    pub fn probabilities(&self, row: &[f64]) -> Vec<f64> {
        softmax(&logits(&self.w, &self.b, row, self.classes))
    }
}

const MAX_ITERATIONS: usize = 500;
const GRADIENT_TOLERANCE: f64 = 1e-7;
const HISTORY: usize = 10;

fn logits(w: &[f64], b: &[f64], row: &[f64], classes: usize) -> Vec<f64> {
    let mut z = b.to_vec();
    for (&x, wr) in row.iter().zip(w.chunks_exact(classes)) {
        if x != 0.0 {
            for (z, &w) in z.iter_mut().zip(wr) {
                *z += x * w;
            }
        }
    }
    z
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// The objective and its gradient at `params` (`W` then `b`).
fn objective(params: &[f64], s: &Samples, lambda: f64) -> (f64, Vec<f64>) {
    let (d, k, n) = (s.dims, s.classes, s.rows());
    let (w, b) = params.split_at(d * k);
    let mut loss = 0.0;
    let mut grad = vec![0.0; params.len()];
    for (row, &y) in s.x.chunks_exact(d).zip(s.y) {
        let z = logits(w, b, row, k);
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_sum = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        loss += log_sum - z[y as usize];
        // ∂/∂z = softmax − onehot(y)
        let mut dz: Vec<f64> = z.iter().map(|v| (v - log_sum).exp()).collect();
        dz[y as usize] -= 1.0;
        let (gw, gb) = grad.split_at_mut(d * k);
        for (&x, gr) in row.iter().zip(gw.chunks_exact_mut(k)) {
            if x != 0.0 {
                for (g, &dz) in gr.iter_mut().zip(&dz) {
                    *g += x * dz;
                }
            }
        }
        for (g, &dz) in gb.iter_mut().zip(&dz) {
            *g += dz;
        }
    }
    let scale = 1.0 / n as f64;
    loss *= scale;
    grad.iter_mut().for_each(|g| *g *= scale);
    let penalty: f64 = w.iter().map(|v| v * v).sum();
    loss += 0.5 * lambda * penalty;
    for (g, &v) in grad.iter_mut().zip(w) {
        *g += lambda * v;
    }
    (loss, grad)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fits the model on `s` with penalty `lambda` (> 0), from all-zero weights.
pub fn fit(s: &Samples, lambda: f64) -> Linear {
    let (d, k) = (s.dims, s.classes);
    let mut x = vec![0.0; d * k + k];
    let (mut f, mut g) = objective(&x, s, lambda);
    let mut history: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new(); // (s, y, 1/yᵀs)
    let mut iterations = 0;
    let mut converged = false;
    while iterations < MAX_ITERATIONS {
        if g.iter().map(|v| v.abs()).fold(0.0, f64::max) < GRADIENT_TOLERANCE {
            converged = true;
            break;
        }
        iterations += 1;
        // Two-loop recursion: the search direction −H·g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (sv, yv, rho) in history.iter().rev() {
            let a = rho * dot(sv, &q);
            q.iter_mut().zip(yv).for_each(|(q, y)| *q -= a * y);
            alphas.push(a);
        }
        if let Some((sv, yv, _)) = history.last() {
            let gamma = dot(sv, yv) / dot(yv, yv);
            q.iter_mut().for_each(|q| *q *= gamma);
        }
        for ((sv, yv, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(yv, &q);
            q.iter_mut().zip(sv).for_each(|(q, s)| *q += (a - beta) * s);
        }
        let mut direction: Vec<f64> = q.into_iter().map(|v| -v).collect();
        let mut slope = dot(&g, &direction);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            history.clear();
            direction = g.iter().map(|v| -v).collect();
            slope = dot(&g, &direction);
        }
        // Backtracking line search (Armijo).
        let mut step = if history.is_empty() {
            1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0)
        } else {
            1.0
        };
        let (next, f_next, g_next) = loop {
            let candidate: Vec<f64> = x
                .iter()
                .zip(&direction)
                .map(|(x, p)| x + step * p)
                .collect();
            let (fc, gc) = objective(&candidate, s, lambda);
            if fc <= f + 1e-4 * step * slope || step < 1e-20 {
                break (candidate, fc, gc);
            }
            step *= 0.5;
        };
        let sv: Vec<f64> = next.iter().zip(&x).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = g_next.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&sv, &yv);
        if sy > 1e-12 {
            history.push((sv, yv, 1.0 / sy));
            if history.len() > HISTORY {
                history.remove(0);
            }
        }
        let progress = f - f_next;
        (x, f, g) = (next, f_next, g_next);
        if progress.abs() <= 1e-15 * f.abs().max(1.0) {
            converged = g.iter().map(|v| v.abs()).fold(0.0, f64::max) < 1e-5;
            break;
        }
    }
    let b = x.split_off(d * k);
    Linear {
        w: x,
        b,
        classes: k,
        iterations,
        converged,
    }
}

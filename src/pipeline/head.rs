//! The grading heads after the pooled features: the shipped dense head (read from the ONNX file)
//! and a site's linear head (fitted on the device by calibration). Each gives the class logits
//! of a pooled feature vector and their exact gradient, from which Grad-CAM is computed.

use crate::pipeline::shape::{check_len, product, CamError};

/// A head on the pooled features `g` (one value per feature channel).
///
/// - Dense: `h = ReLU(g·W1 + b1)`, `z = h·W2 + b2`, weights stored Keras-style, row-major
///   `w1[input][hidden]` and `w2[hidden][class]`. Piecewise linear, so
///   `∂z_c/∂g = W1 (m ⊙ W2[:, c])` with `m = 1[h > 0]` is exact and Grad-CAM needs no autodiff.
/// - Linear: `z = g·W + b`, `w[input][class]`; `∂z_c/∂g = W[:, c]`, whatever `g` is.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    layers: Layers,
    inputs: usize,
    classes: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Layers {
    Dense {
        w1: Vec<f32>,
        b1: Vec<f32>,
        w2: Vec<f32>,
        b2: Vec<f32>,
        hidden: usize,
    },
    Linear {
        w: Vec<f32>,
        b: Vec<f32>,
    },
}

impl Head {
    /// The dense head (one hidden ReLU layer).
    pub fn new(
        w1: Vec<f32>,
        b1: Vec<f32>,
        w2: Vec<f32>,
        b2: Vec<f32>,
        inputs: usize,
        hidden: usize,
        classes: usize,
    ) -> Result<Head, CamError> {
        if inputs == 0 || hidden == 0 || classes == 0 {
            return Err(CamError::Empty("classifier head"));
        }
        check_len("head weight W1", &w1, product(&[inputs, hidden]))?;
        check_len("head bias b1", &b1, hidden)?;
        check_len("head weight W2", &w2, product(&[hidden, classes]))?;
        check_len("head bias b2", &b2, classes)?;
        Ok(Head {
            layers: Layers::Dense {
                w1,
                b1,
                w2,
                b2,
                hidden,
            },
            inputs,
            classes,
        })
    }

    /// A linear head: `w[input][class]`, `b[class]`.
    pub fn linear(
        w: Vec<f32>,
        b: Vec<f32>,
        inputs: usize,
        classes: usize,
    ) -> Result<Head, CamError> {
        if inputs == 0 || classes == 0 {
            return Err(CamError::Empty("classifier head"));
        }
        check_len("head weight W", &w, product(&[inputs, classes]))?;
        check_len("head bias b", &b, classes)?;
        Ok(Head {
            layers: Layers::Linear { w, b },
            inputs,
            classes,
        })
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Class logits (pre-softmax) for a pooled feature vector, accumulated in f64 so that the
    /// recomputed logits agree with the model's to well below f32 display precision.
    pub fn logits(&self, pooled: &[f32]) -> Result<Vec<f32>, CamError> {
        check_len(
            "pooled features given to the classifier head",
            pooled,
            self.inputs,
        )?;
        let z = match &self.layers {
            Layers::Dense { b2, w2, .. } => {
                let hidden = self.pre_activations(pooled);
                affine(hidden.into_iter().map(|p| p.max(0.0)), w2, b2)
            }
            Layers::Linear { w, b } => affine(pooled.iter().map(|&g| f64::from(g)), w, b),
        };
        Ok(z.into_iter().map(|z| z as f32).collect())
    }

    /// Exact gradient `∂z_class/∂g` of one logit with respect to the pooled features.
    pub fn gradient(&self, pooled: &[f32], class: usize) -> Result<Vec<f32>, CamError> {
        if class >= self.classes {
            return Err(CamError::Class {
                class,
                classes: self.classes,
            });
        }
        check_len(
            "pooled features given to the classifier head",
            pooled,
            self.inputs,
        )?;
        Ok(match &self.layers {
            Layers::Dense { w1, w2, hidden, .. } => {
                // Only hidden units that passed the ReLU carry gradient (m ⊙ W2[:, c]).
                let upstream: Vec<f64> = self
                    .pre_activations(pooled)
                    .iter()
                    .zip(w2.chunks_exact(self.classes))
                    .map(|(&p, row)| if p > 0.0 { f64::from(row[class]) } else { 0.0 })
                    .collect();
                w1.chunks_exact(*hidden)
                    .map(|row| {
                        let d: f64 = row
                            .iter()
                            .zip(&upstream)
                            .map(|(&w, &u)| f64::from(w) * u)
                            .sum();
                        d as f32
                    })
                    .collect()
            }
            Layers::Linear { w, .. } => {
                w.chunks_exact(self.classes).map(|row| row[class]).collect()
            }
        })
    }

    /// Hidden pre-activations `g·W1 + b1` of the dense head (empty for a linear one).
    fn pre_activations(&self, pooled: &[f32]) -> Vec<f64> {
        match &self.layers {
            Layers::Dense { w1, b1, .. } => affine(pooled.iter().map(|&g| f64::from(g)), w1, b1),
            Layers::Linear { .. } => Vec::new(),
        }
    }
}

/// `x·W + b` in f64, `w` row-major `[x.len()][b.len()]`.
fn affine(x: impl Iterator<Item = f64>, w: &[f32], b: &[f32]) -> Vec<f64> {
    let mut acc: Vec<f64> = b.iter().map(|&b| f64::from(b)).collect();
    for (xi, row) in x.zip(w.chunks_exact(b.len())) {
        for (a, &w) in acc.iter_mut().zip(row) {
            *a += xi * f64::from(w);
        }
    }
    acc
}

//! Numbers whose shape is checked before use: the error the grading head, Grad-CAM and the
//! model share when a vector or map does not have the length, dimensions or values it should.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CamError {
    #[error("{what} has {got} values but its shape needs {expected}")]
    Length {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{0} has a zero dimension")]
    Empty(&'static str),
    #[error("{0} contains NaN or infinite values")]
    NonFinite(&'static str),
    #[error("class {class} requested but the classifier head has {classes} classes")]
    Class { class: usize, classes: usize },
    #[error("heatmap is {heat_width}x{heat_height} but the image is {image_width}x{image_height}")]
    Size {
        heat_width: usize,
        heat_height: usize,
        image_width: u32,
        image_height: u32,
    },
}

/// Product of dimensions; saturates so absurd dimensions fail the length check instead of overflowing.
pub(crate) fn product(dims: &[usize]) -> usize {
    dims.iter().fold(1, |a, &b| a.saturating_mul(b))
}

pub(crate) fn check_len(
    what: &'static str,
    values: &[f32],
    expected: usize,
) -> Result<(), CamError> {
    if values.len() != expected {
        return Err(CamError::Length {
            what,
            got: values.len(),
            expected,
        });
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(CamError::NonFinite(what));
    }
    Ok(())
}

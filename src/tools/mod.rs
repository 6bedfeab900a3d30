//! Measuring the model: accuracy over a labelled folder (`eval`, `metrics`, `figures`) and
//! per-stage timings (`bench`) on drawn radiographs (`synthetic`).

pub mod bench; // per-stage timings for every shipped model
pub mod eval; // accuracy over a labelled folder
pub mod figures; // confusion-matrix picture, in-memory drawing canvas
pub mod metrics; // accuracy, QWK, MAE, binary figures, confusion matrix
pub mod synthetic; // drawn knee radiographs for the benchmark and the tests

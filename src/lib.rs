//! kneescreen: knee-osteoarthritis screening from a knee radiograph (Kellgren–Lawrence grade,
//! Grad-CAM). Each module owns one concern; `main.rs` is a thin command-line layer over them.

pub mod analysis; // one image end to end → result record, overlay, network input
pub mod app; // the appliance loop: events → analysis → results → panel
pub mod bench; // per-stage timings for every shipped model
pub mod cam; // Grad-CAM from the feature map and the head's weights, heatmap, ROI
pub mod cli; // command-line arguments and commands
pub mod config; // the appliance settings (TOML + flags)
pub mod decode; // bytes → 8-bit grayscale image, with size/allocation limits
pub mod dicom; // DICOM radiographs → 8-bit grey image + non-identifying header facts
pub mod eval; // accuracy over a labelled folder
pub mod figures; // confusion-matrix picture, in-memory drawing canvas
pub mod hw; // panels (virtual; SPI and framebuffer on the Pi), button events
pub mod ingest; // inbox/USB watching, complete-file detection, journal of what was done
pub mod metrics; // accuracy, QWK, MAE, binary figures, confusion matrix
pub mod model; // model card, tract inference
pub mod preprocess; // the preprocessing contract (crop60-eqhist-v1), OpenCV-compatible
pub mod results; // safe input reading, atomic result writing
pub mod ui; // the panel's views, drawn on any DrawTarget
pub mod web; // the web console: pages, JSON API, panel mirror, virtual button

//! The integration tests, in one binary: on two cores, linking one test binary instead of one per
//! file saves minutes. Shared helpers and fixtures live in `support`.

mod support;

mod appliance;
mod calibration;
mod cam_golden;
mod cli_analyze;
mod console_tls;
mod decode;
mod dicom;
mod dicom_network;
mod hw;
mod ingest;
mod localise;
mod metrics_golden;
mod model;
mod pacs_report;
mod preprocess_golden;
mod screening;
mod ui_golden;
mod web;

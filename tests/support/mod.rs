//! What the tests share: running the real binary on temporary folders (`util`), an HTTP client
//! (`http_client`), a DICOM writer (`dicom_writer`), an allocation meter (`largest_allocation`),
//! sample records (`records`) and a real Orthanc PACS to send results to (`orthanc`).

pub mod dicom_writer;
pub mod http_client;
pub mod largest_allocation;
pub mod orthanc;
pub mod records;
pub mod util;

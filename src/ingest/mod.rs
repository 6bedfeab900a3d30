//! Inputs: finds complete image files in the inbox folders and on USB sticks (`Watcher`).
//! Inputs are only ever read; which were done is the journal's (`store::journal`).

mod rules; // which files and folders count as inputs; the watcher's errors
mod watch; // events + periodic walks → complete files

pub use rules::IngestError;
pub use watch::{Watcher, POLL_INTERVAL};

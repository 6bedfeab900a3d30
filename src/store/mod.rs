//! What the appliance keeps: results written so a reader never sees half a file (`atomic`), the
//! results folder and its file names (`results_dir`), and the journal of inputs done (`journal`).

pub mod atomic;
pub mod journal;
pub mod results_dir;

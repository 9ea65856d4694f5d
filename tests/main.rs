//! The single integration-test crate (one binary links once and builds faster). Each module covers one area.

mod algorithms;
mod algorithms2;
mod claims;
mod claims10b;
mod cli;
mod common;
mod coupling;
mod docs;
mod errata10;
mod exact;
mod families;
mod family_sizes;
mod golden;
mod golden_families;
mod golden_judge;
mod golden_replay;
mod hypergrad;
mod noise_model;
mod planted_bugs;
mod plots;
mod problem_model;
mod psd_projection;
mod robustness;
mod stats;

//! The single integration-test crate (one binary links once and builds faster). Each module covers one area.

mod algorithms;
mod algorithms2;
mod claims;
mod cli;
mod common;
mod exact;
mod families;
mod golden;
mod hypergrad;
mod noise_model;
mod problem_model;
mod stats;

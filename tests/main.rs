//! The single integration-test crate (one binary links once and builds faster). Each module covers one area.

mod common;
mod hypergrad;
mod problem_model;

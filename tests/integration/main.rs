//! Integration tests: one binary, one module per area, sharing `tests/support`.

#[path = "../support/mod.rs"]
mod support;

mod build;
mod hostile;

//! Integration tests: one binary, one module per area, sharing `tests/support`.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod architecture;
mod boot;
mod build;
mod build_inputs;
mod cache;
mod check;
mod ci_examples;
mod cli;
mod docker;
mod faults;
mod hostile;
mod inventory;
mod nss;
mod outdated;
mod pipeline;
mod push;
mod push_faults;
mod quiet;
mod recipes;
mod reclaim;
mod registry;
mod sbom;
mod slim;
mod upgrade;

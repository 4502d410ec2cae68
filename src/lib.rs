//! build-distro: turn debootstrap runs, Docker images and image archives into custom
//! distros for the uwsgi.it platform, check them, boot them, push and register them.
//!
//! The library owns the pipeline (`recipe → source → customize → finish → check → pack →
//! push`); the `build-distro` binary only parses arguments, calls in here and prints.
//! Nothing in the library prints or exits: progress goes through [`progress::Reporter`].

pub mod api;
pub mod apt_sources;
pub mod audit;
pub mod boot;
pub mod build_inputs;
pub mod cache;
pub mod check;
pub mod chroot;
pub mod customize;
pub mod error;
pub mod finish;
pub mod interrupt;
pub mod inventory;
pub mod lifecycle;
pub mod mirror;
pub mod os_release;
pub mod outdated;
pub mod pack;
pub mod pipeline;
pub mod progress;
pub mod push;
pub mod recipe;
pub mod runner;
pub mod sbom;
pub mod slim;
pub mod source;
pub mod tree;
pub mod vex;

pub use error::{Error, Result};

pub use build_inputs::VERSION;

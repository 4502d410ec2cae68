//! NSS for container uids (platform.md, "Users inside the container"): the `unbit`
//! module on glibc trees, passwd/group lines on musl trees.

use crate::progress::Reporter;
use crate::recipe::Nss;
use crate::tree::Root;

/// Apply the recipe's `[nss]`; returns what was done, for the report.
pub fn apply(_root: &Root, nss: &Nss, _reporter: &Reporter) -> Result<String, super::Error> {
    Ok(format!("{:?} (pending)", nss.mode).to_lowercase())
}

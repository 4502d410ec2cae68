//! The `passwd` mode (musl has no NSS, or the recipe chose it): the recipe's `[nss] uids`
//! as `/etc/passwd`, `/etc/group` and `/etc/shadow` lines, the same answers the module
//! gives, appended once.

use std::path::Path;

use super::{exists, read_text, write_keeping_owner, Error};
use crate::progress::Reporter;
use crate::tree::Root;

/// Container uids start here (platform.md).
pub const FIRST_UID: u32 = 30000;

/// The `/etc/passwd` line for container uid `uid` (the same answer the module gives).
pub fn passwd_line(uid: u32, shell: &str) -> String {
    format!("{uid}:x:{uid}:{uid}:{uid}:/containers/{uid}:{shell}")
}

pub fn group_line(uid: u32) -> String {
    format!("{uid}:x:{uid}:")
}

/// The `/etc/shadow` line: a locked password like the module's. The last-change field
/// stays empty (no aging) instead of the build date, so builds stay reproducible.
pub fn shadow_line(uid: u32) -> String {
    format!("{uid}:!:::::::")
}

/// `text` with `lines` appended, skipping any whose name (field 1) or, when `id_field`
/// is given, id is already there.
fn append_entries(text: &str, lines: &[String], id_field: Option<usize>) -> String {
    let mut out = text.to_string();
    for line in lines {
        let fields: Vec<&str> = line.split(':').collect();
        let present = out.lines().any(|l| {
            let f: Vec<&str> = l.split(':').collect();
            f[0] == fields[0] || id_field.is_some_and(|i| f.get(i) == fields.get(i))
        });
        if !present {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `passwd` mode: the uids' lines in `/etc/passwd`, `/etc/group` and `/etc/shadow`.
pub(super) fn add_passwd_entries(
    root: &Root,
    uids: &[u32],
    reporter: &Reporter,
) -> Result<String, Error> {
    if let Some(u) = uids.iter().find(|u| **u < FIRST_UID) {
        return Err(Error::NssRecipe(format!(
            "uids: {u} is not a container uid (they start at {FIRST_UID})"
        )));
    }
    if uids.is_empty() {
        reporter.warn(
            "nss: passwd mode with no [nss] uids: container users will have no name (\"I have no name!\"); list them in [nss] uids",
        );
        return Ok("passwd (no uids)".to_string());
    }
    let shell = if exists(root, Path::new("/bin/bash")) {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let files: [(&str, Vec<String>, Option<usize>, u32); 3] = [
        (
            "/etc/passwd",
            uids.iter().map(|u| passwd_line(*u, shell)).collect(),
            Some(2),
            0o644,
        ),
        (
            "/etc/group",
            uids.iter().map(|u| group_line(*u)).collect(),
            Some(2),
            0o644,
        ),
        (
            "/etc/shadow",
            uids.iter().map(|u| shadow_line(*u)).collect(),
            None,
            0o640,
        ),
    ];
    for (file, lines, id_field, mode) in files {
        let rel = Path::new(file);
        let current = match root.lstat(rel)? {
            Some(_) => read_text(root, rel)?,
            None => String::new(),
        };
        write_keeping_owner(root, rel, &append_entries(&current, &lines, id_field), mode)?;
    }
    let list: Vec<String> = uids.iter().map(u32::to_string).collect();
    Ok(format!("passwd ({})", list.join(", ")))
}

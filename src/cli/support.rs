//! The support window in words, for `outdated`, `check`, `build` and `distros audit`: the
//! release's state, then the installed packages Debian's lists name.

use build_distro::lifecycle::{PackageState, Support};

/// The lists read, by file name (`--json` has where each came from).
fn names(lists: &[String]) -> String {
    let names: Vec<&str> = lists
        .iter()
        .map(|l| l.rsplit('/').next().unwrap_or(l))
        .collect();
    names.join(", ")
}

/// `support: …` lines (each ends with a newline).
pub fn text(s: &Support) -> String {
    let mut out = format!("support: {}\n", s.release.message);
    let p = &s.packages;
    if let Some(why) = &p.not_checked {
        out.push_str(&format!("support: packages not checked: {why}\n"));
        return out;
    }
    if p.packages.is_empty() {
        out.push_str(&format!(
            "support: no installed package has limited or ended security support ({})\n",
            names(&p.lists)
        ));
        return out;
    }
    out.push_str(&format!(
        "support: {} installed package(s) with limited or ended security support ({}):\n",
        p.packages.len(),
        names(&p.lists)
    ));
    for pkg in &p.packages {
        let state = match (pkg.status, &pkg.date) {
            (PackageState::Limited, _) => "limited".to_string(),
            (PackageState::Ended, Some(d)) => format!("ended {d}"),
            (PackageState::Ends, Some(d)) => format!("ends {d}"),
            (_, None) => "ended".to_string(),
        };
        out.push_str(&format!(
            "  {} {} (source {}): {state}{}\n",
            pkg.package,
            pkg.version,
            pkg.source,
            if pkg.details.is_empty() {
                String::new()
            } else {
                format!(": {}", pkg.details)
            }
        ));
    }
    out
}

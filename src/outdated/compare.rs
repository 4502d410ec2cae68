//! The installed packages against the newest versions the suites publish, by apt's rule
//! (the newest of every suite at the default priority wins).

use super::*;

/// The newest version per installed package in each suite.
pub(super) type Candidates = HashMap<(String, String), Vec<(String, usize)>>;

/// Compare the installed packages with the newest versions of the plan's suites.
pub fn compare(inv: &Inventory, plan: &Plan, found: &Candidates) -> Report {
    let eco = plan.ecosystem;
    let mut pending = Vec::new();
    for p in &inv.packages {
        let key = (p.name.clone(), key_arch(eco, &p.arch));
        let Some(cands) = found.get(&key) else {
            continue;
        };
        let Some(best) = cands
            .iter()
            .map(|(v, _)| v)
            .max_by(|a, b| version::compare(eco, a, b))
        else {
            continue;
        };
        if version::compare(eco, best, &p.version) != std::cmp::Ordering::Greater {
            continue;
        }
        let from: Vec<&Suite> = cands
            .iter()
            .filter(|(v, _)| version::compare(eco, v, best) == std::cmp::Ordering::Equal)
            .map(|(_, i)| &plan.suites[*i])
            .collect();
        let security = from.iter().any(|s| s.security);
        let suite = from
            .iter()
            .find(|s| s.security == security)
            .map_or(String::new(), |s| s.name.clone());
        pending.push(Pending {
            name: p.name.clone(),
            installed: p.version.clone(),
            available: best.clone(),
            suite,
            security,
            purl: crate::sbom::purl(eco, &inv.os, p),
            fixes: None,
        });
    }
    pending.sort_by(|a, b| a.name.cmp(&b.name));
    pending.dedup();
    Report {
        distro: plan.distro.clone(),
        suites: plan.suites.iter().map(|s| s.name.clone()).collect(),
        packages: pending,
        support: None,
    }
}

/// dpkg keys packages by name and architecture; apk by name alone.
pub(super) fn key_arch(eco: Ecosystem, arch: &str) -> String {
    match eco {
        Ecosystem::Deb => arch.to_string(),
        Ecosystem::Apk => String::new(),
    }
}

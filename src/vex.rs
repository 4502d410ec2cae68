//! CycloneDX 1.6 VEX (`outdated --format cyclonedx-vex`): the CVE IDs and Debian
//! advisories the pending security updates of an [`outdated`](crate::outdated) report fix,
//! as vulnerabilities of the installed packages. Sits above `outdated` and `sbom`: the
//! components carry the same purls as the SBOM's (built by [`crate::sbom::purl`] when the
//! report was made), and the document shares the SBOM's CycloneDX fields.
//!
//! Each ID is one vulnerability; it `affects` every installed package whose update fixes
//! it, the installed version `affected` and the update's version `unaffected`. The
//! analysis state is `in_triage` with the response `update`: the distribution says the
//! installed version is vulnerable and the update fixes it, but nobody has judged whether
//! this distro's use of the package is exploitable (`exploitable` would claim that). Like
//! the SBOM, the same report always gives the same bytes: no clock, sorted lists, and a
//! serial number derived from the content.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::outdated::{Pending, Report};
use crate::sbom::cyclonedx;

/// The VEX document of `r` (packages without fixes, or not looked up, are left out).
pub fn document(r: &Report) -> Value {
    let mut components: BTreeMap<&str, &Pending> = BTreeMap::new();
    let mut vulns: BTreeMap<&str, Vec<&Pending>> = BTreeMap::new();
    for p in &r.packages {
        for id in p.fixes.iter().flatten() {
            components.insert(&p.purl, p);
            vulns.entry(id).or_default().push(p);
        }
    }
    let mut ids: Vec<String> = vulns.keys().map(|s| s.to_string()).collect();
    crate::mirror::changelog::sort_ids(&mut ids);
    let tracker = tracker(&r.distro);
    let vulnerabilities: Vec<Value> = ids
        .iter()
        .map(|id| {
            let mut affected = vulns[id.as_str()].clone();
            affected.sort_by(|a, b| a.purl.cmp(&b.purl));
            affected.dedup_by(|a, b| a.purl == b.purl);
            let upgrades: Vec<String> = affected
                .iter()
                .map(|p| format!("{} {} ({})", p.name, p.available, p.suite))
                .collect();
            json!({
                "bom-ref": format!("vuln:{id}"),
                "id": id,
                "source": {"name": tracker.0, "url": format!("{}{id}", tracker.1)},
                "analysis": {
                    "state": "in_triage",
                    "response": ["update"],
                    "detail": "named in the changelog of a pending security update: the installed version is affected, the update's version fixes it",
                },
                "recommendation": format!("upgrade {}", upgrades.join(", ")),
                "affects": affected.iter().map(|p| json!({
                    "ref": p.purl,
                    "versions": [
                        {"version": p.installed, "status": "affected"},
                        {"version": p.available, "status": "unaffected"},
                    ],
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let components: Vec<Value> = components
        .values()
        .map(|p| cyclonedx::library(&p.name, &p.installed, &p.purl))
        .collect();
    let body = json!({
        "metadata": {
            "tools": cyclonedx::tools(),
            "component": {
                "type": "operating-system",
                "bom-ref": format!("distro:{}", r.distro),
                "name": r.distro,
            },
        },
        "components": components,
        "vulnerabilities": vulnerabilities,
    });
    let serial = crate::sbom::uuid_named(format!("cyclonedx-vex:{body}").as_bytes());
    let mut doc = cyclonedx::bom(serial);
    for (k, v) in body.as_object().expect("an object") {
        doc[k] = v.clone();
    }
    doc
}

/// Where the distribution explains an ID: Ubuntu's CVE pages, else Debian's tracker
/// (which knows CVE, DSA and DLA IDs).
fn tracker(distro: &str) -> (&'static str, &'static str) {
    if distro.starts_with("ubuntu-") {
        ("Ubuntu", "https://ubuntu.com/security/")
    } else {
        ("Debian", "https://security-tracker.debian.org/tracker/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(name: &str, installed: &str, available: &str, fixes: Option<&[&str]>) -> Pending {
        Pending {
            name: name.into(),
            installed: installed.into(),
            available: available.into(),
            suite: "bookworm-security".into(),
            security: fixes.is_some(),
            purl: format!("pkg:deb/debian/{name}@{installed}?arch=amd64&distro=debian-12"),
            fixes: fixes.map(|f| f.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn report() -> Report {
        Report {
            distro: "debian-12".into(),
            suites: vec!["bookworm".into(), "bookworm-security".into()],
            packages: vec![
                pending(
                    "libssl3",
                    "3.0.11-1",
                    "3.0.17-1",
                    Some(&["CVE-2024-9143", "DSA-6015-1"]),
                ),
                pending("openssl", "3.0.11-1", "3.0.17-1", Some(&["CVE-2024-9143"])),
                pending("tzdata", "2024a-0", "2025b-0", None),
                pending("zlib1g", "1.2.13-1", "1.2.13-2", Some(&[])),
            ],
            support: None,
        }
    }

    #[test]
    fn one_vulnerability_per_id_affecting_each_package_it_names() {
        let d = document(&report());
        assert_eq!(d["specVersion"], "1.6");
        let comps: Vec<&str> = d["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(comps, ["libssl3", "openssl"], "only packages with fixes");
        assert_eq!(
            d["components"][0]["version"], "3.0.11-1",
            "the installed version"
        );
        let v = d["vulnerabilities"].as_array().unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["id"], "CVE-2024-9143");
        assert_eq!(v[0]["analysis"]["state"], "in_triage");
        let refs: Vec<&str> = v[0]["affects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ref"].as_str().unwrap())
            .collect();
        assert_eq!(
            refs,
            [
                "pkg:deb/debian/libssl3@3.0.11-1?arch=amd64&distro=debian-12",
                "pkg:deb/debian/openssl@3.0.11-1?arch=amd64&distro=debian-12"
            ]
        );
        assert_eq!(
            v[0]["affects"][0]["versions"],
            json!([{"version": "3.0.11-1", "status": "affected"},
                   {"version": "3.0.17-1", "status": "unaffected"}])
        );
        assert_eq!(
            v[1]["source"]["url"],
            "https://security-tracker.debian.org/tracker/DSA-6015-1"
        );
    }

    #[test]
    fn the_same_report_gives_the_same_document_and_another_another_serial() {
        let a = document(&report());
        assert_eq!(a, document(&report()));
        let mut r = report();
        r.packages[1].fixes = Some(vec!["CVE-2025-1".into()]);
        assert_ne!(a["serialNumber"], document(&r)["serialNumber"]);
    }
}

//! SPDX 2.3 JSON: a document that DESCRIBES the distro (a package with purpose
//! `CONTAINER`, its content id as version) and the files build-distro added. The distro
//! CONTAINS the operating system (purpose `OPERATING-SYSTEM`), which CONTAINS every
//! installed package, each with its purl as a `PACKAGE-MANAGER` external reference.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::Sbom;

/// Where the document namespaces live: `<this>/<name>-<uuid>`, unique per content.
const NAMESPACE_BASE: &str = "https://uwsgi.it/build-distro/spdx";

pub fn document(s: &Sbom) -> Value {
    let mut ids = Ids::default();
    let distro_id = ids.make("Distro", &s.name);
    let mut packages = vec![json!({
        "SPDXID": distro_id,
        "name": s.name,
        "versionInfo": s.content_id,
        "primaryPackagePurpose": "CONTAINER",
        "description": "the distro as build-distro packed it; versionInfo is its content id",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
    })];
    let mut described = vec![distro_id.clone()];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": distro_id,
    })];
    let rel = |from: &str, kind: &str, to: &str| {
        json!({
            "spdxElementId": from,
            "relationshipType": kind,
            "relatedSpdxElement": to,
        })
    };
    if let Some(os) = &s.os {
        let os_id = ids.make("OperatingSystem", &super::distro_qualifier(os));
        packages.push(json!({
            "SPDXID": os_id,
            "name": os.id,
            "versionInfo": os.version_id.as_deref().or(os.version_codename.as_deref()).unwrap_or("unknown"),
            "primaryPackagePurpose": "OPERATING-SYSTEM",
            "description": os.pretty_name.as_deref().unwrap_or(&os.id),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
        }));
        relationships.push(rel(&distro_id, "CONTAINS", &os_id));
        for c in &s.components {
            let p = &c.package;
            let id = ids.make("Package", &format!("{}-{}", p.name, p.arch));
            let mut pkg = json!({
                "SPDXID": id,
                "name": p.name,
                "versionInfo": p.version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": c.purl,
                }],
            });
            if p.source.is_some() || p.source_version.is_some() {
                pkg["sourceInfo"] = json!(format!(
                    "built package from: {} {}",
                    p.source.as_deref().unwrap_or(&p.name),
                    p.source_version.as_deref().unwrap_or(&p.version)
                ));
            }
            // apk's licenses are not always SPDX expressions: keep them as a comment
            // rather than risk an invalid licenseDeclared.
            if let Some(l) = &p.license {
                pkg["licenseComments"] = json!(format!("license declared by apk: {l}"));
            }
            relationships.push(rel(&os_id, "CONTAINS", &id));
            packages.push(pkg);
        }
    }
    // An unanalysed package may contain no files: the document describes them itself.
    let files: Vec<Value> = s
        .files
        .iter()
        .map(|f| {
            let id = ids.make("File", f.path.trim_start_matches('/'));
            relationships.push(rel("SPDXRef-DOCUMENT", "DESCRIBES", &id));
            described.push(id.clone());
            json!({
                "SPDXID": id,
                "fileName": format!(".{}", f.path),
                "comment": "added by build-distro",
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": f.sha1},
                    {"algorithm": "SHA256", "checksumValue": f.sha256},
                ],
            })
        })
        .collect();
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": s.name,
        "documentNamespace": format!("{NAMESPACE_BASE}/{}-{}", url_safe(&s.name), s.uuid("spdx")),
        "creationInfo": {
            "created": super::rfc3339(s.created),
            "creators": [format!("Tool: build-distro-{}", crate::build_inputs::VERSION)],
        },
        "documentDescribes": described,
        "packages": packages,
        "files": files,
        "relationships": relationships,
    });
    if let Some(note) = &s.note {
        doc["comment"] = json!(format!("no packages listed: {note}"));
    }
    doc
}

/// SPDX element ids: `SPDXRef-KIND-NAME` where NAME keeps letters, digits, `.` and `-`,
/// turns `/` into `-` and writes any other byte as `.XX` (hex): `libstdc++6` →
/// `libstdc.2B.2B6`. Two names that map to one id (`a+` and `a.2B`) are told apart by
/// `-2`, `-3`, … in document order, which is deterministic.
#[derive(Default)]
struct Ids(HashSet<String>);

impl Ids {
    fn make(&mut self, kind: &str, name: &str) -> String {
        let mut base = format!("SPDXRef-{kind}-");
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
                base.push(b as char);
            } else if b == b'/' {
                base.push('-');
            } else {
                base.push_str(&format!(".{b:02X}"));
            }
        }
        let mut id = base.clone();
        let mut n = 1;
        while !self.0.insert(id.clone()) {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    }
}

/// A distro name as a URI path segment (names are `[a-z0-9._-]` already; anything else
/// becomes `-`).
fn url_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_unique() {
        let mut ids = Ids::default();
        let a = ids.make("Package", "libstdc++6-amd64");
        assert_eq!(a, "SPDXRef-Package-libstdc.2B.2B6-amd64");
        assert_eq!(ids.make("Package", "x86_64"), "SPDXRef-Package-x86.5F64");
        assert_eq!(
            ids.make("File", "opt/unbit/uwsgi/shortcuts.ini"),
            "SPDXRef-File-opt-unbit-uwsgi-shortcuts.ini"
        );
        // Names that escape alike still get their own ids.
        assert_eq!(ids.make("Package", "a.2B"), "SPDXRef-Package-a.2B");
        assert_eq!(ids.make("Package", "a+"), "SPDXRef-Package-a.2B-2");
        assert_eq!(ids.make("Package", "libstdc++6-amd64"), format!("{a}-2"));
        for id in ids.0 {
            assert!(
                id["SPDXRef-".len()..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                "{id}"
            );
        }
    }
}

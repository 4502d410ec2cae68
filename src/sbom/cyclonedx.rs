//! CycloneDX 1.6 JSON: the distro as the BOM's subject (`metadata.component`), the
//! operating system as an `operating-system` component (where Trivy and Grype look for
//! the distribution), every installed package as a `library` with its purl, and the files
//! build-distro added as `file` components with their hashes.

use serde_json::{json, Value};

use super::Sbom;

pub fn document(s: &Sbom) -> Value {
    let distro_ref = format!("distro:{}", s.name);
    let mut components = Vec::new();
    let mut dependencies = Vec::new();
    let mut distro_deps = Vec::new();
    if let Some(os) = &s.os {
        let os_ref = format!("os:{}", super::distro_qualifier(os));
        components.push(json!({
            "type": "operating-system",
            "bom-ref": os_ref,
            "name": os.id,
            "version": os.version_id.as_deref().or(os.version_codename.as_deref()).unwrap_or("unknown"),
            "description": os.pretty_name.as_deref().unwrap_or(&os.id),
        }));
        let mut package_refs = Vec::new();
        for c in &s.components {
            components.push(component(c));
            package_refs.push(c.purl.clone());
        }
        dependencies.push(json!({"ref": os_ref, "dependsOn": package_refs}));
        distro_deps.push(os_ref);
    }
    for f in &s.files {
        let r = format!("file:{}", f.path);
        components.push(json!({
            "type": "file",
            "bom-ref": r,
            "name": f.path,
            "hashes": [
                {"alg": "SHA-1", "content": f.sha1},
                {"alg": "SHA-256", "content": f.sha256},
            ],
            "properties": [{"name": "build-distro:added", "value": "true"}],
        }));
        distro_deps.push(r);
    }
    dependencies.insert(0, json!({"ref": distro_ref, "dependsOn": distro_deps}));
    let mut distro = json!({
        "type": "container",
        "bom-ref": distro_ref,
        "name": s.name,
        "version": s.content_id,
    });
    if let Some(note) = &s.note {
        distro["description"] = json!(format!("no packages listed: {note}"));
    }
    let mut doc = bom(s.uuid("cyclonedx"));
    doc["metadata"] = json!({
        "timestamp": super::rfc3339(s.created),
        "tools": tools(),
        "component": distro,
    });
    doc["components"] = json!(components);
    doc["dependencies"] = json!(dependencies);
    doc
}

/// The fields every CycloneDX 1.6 document of build-distro starts with (the SBOM, and
/// `outdated`'s VEX).
pub fn bom(serial: uuid::Uuid) -> Value {
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{serial}"),
        "version": 1,
    })
}

/// `metadata.tools`: build-distro itself.
pub fn tools() -> Value {
    json!({
        "components": [{
            "type": "application",
            "name": "build-distro",
            "version": crate::build_inputs::VERSION,
        }],
    })
}

/// An installed package as a `library` component, named by its purl (also its bom-ref).
pub fn library(name: &str, version: &str, purl: &str) -> Value {
    json!({
        "type": "library",
        "bom-ref": purl,
        "name": name,
        "version": version,
        "purl": purl,
    })
}

/// An installed package as a `library` component; its purl is also its bom-ref.
fn component(c: &super::Component) -> Value {
    let p = &c.package;
    let mut comp = library(&p.name, &p.version, &c.purl);
    let mut props = vec![json!({"name": "build-distro:package:arch", "value": p.arch})];
    if let Some(src) = &p.source {
        props.push(json!({"name": "build-distro:package:source", "value": src}));
    }
    if let Some(v) = &p.source_version {
        props.push(json!({"name": "build-distro:package:source-version", "value": v}));
    }
    comp["properties"] = Value::Array(props);
    // apk's licenses are free text as often as SPDX ids: a name is always valid.
    if let Some(l) = &p.license {
        comp["licenses"] = json!([{"license": {"name": l}}]);
    }
    comp
}

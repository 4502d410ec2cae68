//! Builds the `unbit` NSS module (`src/finish/nss_unbit.c`) into `OUT_DIR`, where
//! `src/finish/nss.rs` embeds it with `include_bytes!`: a copied `build-distro` binary
//! carries the module it installs. A plain C compiler is enough (scripts/setup.sh
//! installs gcc and libc6-dev); the flags keep the result loadable in old glibc trees.

use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "src/finish/nss_unbit.c";
const MODULE: &str = "libnss_unbit.so.2";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join(MODULE);
    let target = std::env::var("TARGET").unwrap_or_default();
    // The module must match the target, not the build machine: the cc crate's variables,
    // most specific first.
    let vars = [
        format!("CC_{target}"),
        format!("CC_{}", target.replace('-', "_")),
        "TARGET_CC".to_string(),
        "CC".to_string(),
    ];
    for v in &vars {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let cc = vars
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .unwrap_or_else(|| "cc".to_string());
    let status = Command::new(&cc)
        .args([
            "-std=gnu99",
            "-O2",
            "-Wall",
            "-Wextra",
            "-fPIC",
            "-shared",
            // Only the _nss_unbit_* entry points are exported.
            "-fvisibility=hidden",
            // Fortified variants (__*_chk) would differ between distros' compilers.
            "-U_FORTIFY_SOURCE",
            "-Wl,-soname,libnss_unbit.so.2",
            // Old loaders only read the SysV hash table.
            "-Wl,--hash-style=both",
            "-Wl,-z,defs",
            "-Wl,--as-needed",
            "-o",
        ])
        .arg(&out)
        .arg(SOURCE)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run the C compiler `{cc}` for {SOURCE}: {e}; apt-get install gcc libc6-dev (or set CC)")
        });
    assert!(
        status.success(),
        "compiling {SOURCE} with `{cc}` failed ({status}); apt-get install gcc libc6-dev"
    );
}

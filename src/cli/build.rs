//! `build`: run the pipeline on a recipe and print where the result is.

use std::path::PathBuf;

use build_distro::pack::Format;
use build_distro::pipeline::{build, BuildOptions};

use super::push::Assign;
use super::{print_json, Ctx, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A recipe file, or the name of one in recipes/ (default: the built-in debian-trixie).
    pub recipe: Option<String>,
    /// Where the archive, manifest, report and SBOMs (NAME.spdx.json, NAME.cdx.json) go.
    #[arg(long, default_value = "dist")]
    pub out: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "tar.gz")]
    pub format: Format,
    /// Override a recipe key, e.g. --set source.suite=trixie (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Where the temporary build directory goes (default: $TMPDIR or /tmp).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the build directory afterwards (for debugging a recipe).
    #[arg(long)]
    pub keep_build: bool,
    /// Refuse source archives that expand past this size (declared sizes, sparse files at
    /// full size, the decompressed stream): 512M, 64G, or bytes.
    #[arg(long, value_name = "SIZE", env = "BUILD_DISTRO_MAX_UNPACK", default_value = "64G", value_parser = parse_size)]
    pub max_unpack: u64,
    /// gzip level, 1 (fast) to 9 (small).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub level: u32,
    /// Accept a check rule's errors knowingly (repeatable; recorded in the provenance).
    #[arg(long = "allow", value_name = "RULE-ID")]
    pub allow: Vec<String>,
    /// Build without the build cache: bootstrap from scratch, keep nothing.
    #[arg(long)]
    pub no_cache: bool,
    /// Print the build report as JSON on stdout (with --publish: `{"build", "publish"}`).
    #[arg(long)]
    pub json: bool,
    /// Go on with push as the recipe's [publish] says (to, strategy, assign).
    #[arg(long)]
    pub publish: bool,
    /// User for a registry source (with --registry-password-stdin); before any
    /// credentials file.
    #[arg(long, value_name = "USER", requires = "registry_password_stdin")]
    pub registry_user: Option<String>,
    /// Read the registry password or token from stdin (one line), never from the command
    /// line where other users could see it.
    #[arg(long, requires = "registry_user")]
    pub registry_password_stdin: bool,
    #[command(flatten)]
    pub support: super::flags::SupportFlags,
    #[command(flatten)]
    pub push: super::push::PushFlags,
}

/// `--registry-user` with the password read from stdin.
fn registry_login(
    a: &Args,
) -> build_distro::Result<Option<build_distro::source::registry::Credentials>> {
    use build_distro::source::registry::{Credentials, Secret};
    let Some(user) = &a.registry_user else {
        return Ok(None);
    };
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| {
        build_distro::Error::from(build_distro::push::Error::Usage(format!(
            "--registry-password-stdin: cannot read stdin: {e}"
        )))
    })?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(build_distro::push::Error::Usage(
            "--registry-password-stdin: stdin held no password; pipe it in: echo \"$TOKEN\" | build-distro build --registry-user USER --registry-password-stdin ...".into(),
        )
        .into());
    }
    Ok(Some(Credentials {
        user: user.clone(),
        secret: Secret::new(password),
    }))
}

pub fn run(a: Args, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    let loaded = build_distro::recipe::load(a.recipe.as_deref(), &a.sets)?;
    let registry_login = registry_login(&a)?;
    // Refuse before building for an hour when the publish settings cannot work.
    let publish = match (a.publish, &loaded.recipe.publish) {
        (false, _) => None,
        (true, None) => {
            return Err(build_distro::push::Error::Usage(format!(
                "{}: --publish needs a [publish] table (to = \"all\" or [uids])",
                loaded.origin
            ))
            .into())
        }
        (true, Some(p)) => {
            let to = build_distro::push::publish::To::from_recipe(&p.to)?;
            let Some(assign) = Assign::confirm(&p.assign, &a.push, "after the build, ", ctx)?
            else {
                return Err(build_distro::pipeline::Error::NotConfirmed.into());
            };
            Some((to, p.strategy, assign))
        }
    };
    let reporter = ctx.reporter();
    reporter.info(&format!(
        "building {} from {}",
        loaded.name(),
        loaded.origin
    ));
    let opts = BuildOptions {
        out: a.out,
        format: a.format,
        work_dir: a.work_dir,
        keep_build: a.keep_build,
        max_unpack_bytes: a.max_unpack,
        level: a.level,
        source_date_epoch: super::source_date_epoch(),
        allow: a.allow,
        registry_login,
        cache: if a.no_cache {
            None
        } else {
            build_distro::cache::Cache::default_root().ok()
        },
        support: a.support.sources(),
        today: build_distro::lifecycle::today(),
    };
    let work_dir = opts.work_dir.clone();
    let report = build(&loaded, &opts, &*ctx.runner(), &reporter)?;
    let published = match publish {
        None => None,
        Some((to, strategy, assign)) => Some(super::push::publish(
            &report.output,
            to,
            strategy,
            assign,
            &a.push,
            work_dir,
            ctx,
        )?),
    };
    if a.json {
        match &published {
            None => print_json(&report),
            Some(p) => print_json(&serde_json::json!({ "build": report, "publish": p })),
        }
    } else {
        println!("built {} ({})", report.output.display(), report.content_id);
        // -q: errors, warnings and this one line.
        if ctx.verbosity != build_distro::progress::Verbosity::Quiet {
            let total: f64 = report.timings.iter().map(|t| t.1).sum();
            let times: Vec<String> = report
                .timings
                .iter()
                .map(|(s, t)| format!("{s} {t:.1}s"))
                .collect();
            // What to pin for a repeatable build (an image digest), or what was read.
            println!("  from {} {}", report.source.kind, report.source.reference);
            println!(
                "  {} entries, {} files, {:.1} MiB content, {:.1} MiB archive",
                report.entries,
                report.files,
                report.bytes as f64 / 1048576.0,
                report.archive_bytes as f64 / 1048576.0
            );
            println!(
                "  manifest {}, report {}",
                report.manifest.display(),
                report.report.display()
            );
            let sboms: Vec<String> = report
                .sboms
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            println!("  sbom {}", sboms.join(", "));
            if let Some(s) = &report.support {
                println!("  support {}", s.release.message);
            }
            println!("  time {total:.1}s: {}", times.join(", "));
        }
        if let Some(p) = &published {
            super::push::print_report(p);
        }
    }
    Ok(match published {
        Some(p) if !p.ok() => ExitStatus::Failed,
        _ => ExitStatus::Ok,
    })
}

/// [`parse_size`], where 0 is allowed (`cache prune --max-size 0`).
pub fn parse_size_or_zero(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    parse_size(s)
}

/// `512M`, `64G`, `1T` or plain bytes (binary units).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{s:?}: unknown unit; use K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a size like 512M or 64G"))?;
    if n == 0 {
        return Err(format!("{s:?}: the limit must be above 0"));
    }
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?}: too large"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_size("64G"), Ok(64 << 30));
        assert_eq!(super::parse_size("512m"), Ok(512 << 20));
        assert_eq!(super::parse_size("1000"), Ok(1000));
        assert!(super::parse_size("0").is_err());
        assert!(super::parse_size("5X").is_err());
        assert!(super::parse_size("99999999999T").is_err());
    }
}

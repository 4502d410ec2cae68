//! The checked strings one recipe key holds (API names and paths, package names, suites,
//! mirror URLs, paths inside the tree, file modes): each one validates itself when serde
//! reads it, so an error names the key, and no stage has to check it again.

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn charset(s: &str, what: &str, ok: fn(char) -> bool, allowed: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.len() > 255 {
        return Err(format!("{what} {s:?} is longer than 255 characters"));
    }
    if let Some(c) = s.chars().find(|c| !ok(*c)) {
        let fixed: String = s.chars().map(|c| if ok(c) { c } else { '-' }).collect();
        return Err(format!(
            "{what} {s:?} has {c:?}: only {allowed} are allowed; try {fixed:?}"
        ));
    }
    Ok(())
}

/// The API path charset, `A-Za-z0-9._-`.
pub fn check_api_path(s: &str) -> Result<(), String> {
    charset(
        s,
        "path",
        |c| c.is_ascii_alphanumeric() || "._-".contains(c),
        "A-Za-z0-9._-",
    )?;
    if s == "." || s == ".." {
        return Err(format!("path {s:?} is not a directory name"));
    }
    Ok(())
}

checked_string!(
    /// A custom distro's storage directory name (the API `path`).
    ApiPath,
    check_api_path
);

checked_string!(
    /// A custom distro's API name.
    ApiName,
    |s| {
        if s.is_empty() || s.len() > 255 {
            return Err(format!("name {s:?} must have 1 to 255 characters"));
        }
        Ok(())
    }
);

checked_string!(
    /// A package name as apt, apk and dnf take it (`name`, `name=version`, `name:arch`).
    PackageName,
    |s| {
        charset(s, "package", |c| c.is_ascii_alphanumeric() || "+._:=~-".contains(c), "A-Za-z0-9+._:=~-")?;
        if s.starts_with('-') {
            return Err(format!("package {s:?} starts with '-': it would be read as an option"));
        }
        Ok(())
    }
);

checked_string!(
    /// A locale directory name under `/usr/share/locale` (`en_GB`, `sr@latin`). It ends
    /// up in a dpkg `path-include` pattern, so no glob character and no `/`.
    LocaleName,
    |s| {
        charset(s, "locale", |c| c.is_ascii_alphanumeric() || "_@.+-".contains(c), "A-Za-z0-9_@.+-")?;
        if s.starts_with(['.', '-']) {
            return Err(format!("locale {s:?} must start with a letter or digit, like \"en_GB\""));
        }
        Ok(())
    }
);

checked_string!(
    /// A suite, variant, component or architecture name.
    Word,
    |s| {
        charset(s, "value", |c| c.is_ascii_alphanumeric() || "._-".contains(c), "A-Za-z0-9._-")?;
        if s.starts_with('-') {
            return Err(format!("value {s:?} starts with '-': it would be read as an option"));
        }
        Ok(())
    }
);

/// Characters a mirror URL may hold: RFC 3986 without the ones a shell or a
/// `sources.list` line would read as syntax (`$`, quotes, `;`, `&`, `*`, `\\`, `(`, `)`,
/// `` ` ``). The URL reaches debootstrap (a shell script) and apt's sources.list, so it
/// is kept to what no quoting mistake downstream can turn into code or options.
fn mirror_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!+,=%".contains(c)
}

checked_string!(
    /// A package mirror URL.
    MirrorUrl,
    |s| {
        let rest = ["http://", "https://", "file://"]
            .iter()
            .find_map(|p| s.strip_prefix(p));
        let Some(rest) = rest else {
            return Err(format!("mirror {s:?} must be an http://, https:// or file:// URL"));
        };
        if let Some(c) = s.chars().find(|c| !mirror_char(*c)) {
            return Err(format!(
                "mirror {s:?} has {c:?}: only A-Za-z0-9 and -._~:/?#[]@!+,=% are allowed; percent-encode the rest"
            ));
        }
        if !s.starts_with("file://") && (rest.is_empty() || rest.starts_with('/')) {
            return Err(format!("mirror {s:?} has no host"));
        }
        Ok(())
    }
);

checked_string!(
    /// An absolute path inside the distro tree, without `..`.
    TreePath,
    |s| {
        let p = Path::new(s);
        // A newline or NUL in a path breaks the manifest and the syscalls alike.
        if s.contains(|c: char| c.is_control()) {
            return Err(format!("path {s:?} has a control character"));
        }
        if !p.is_absolute() {
            return Err(format!("path {s:?} must be absolute inside the distro (start with /)"));
        }
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(format!("path {s:?} must not contain `..`"));
        }
        if p.components().count() < 2 {
            return Err(format!("path {s:?} names the root itself"));
        }
        Ok(())
    }
);

checked_string!(
    /// Octal permission bits, "0755".
    FileMode,
    |s| match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(()),
        _ => Err(format!("mode {s:?} must be octal permission bits like \"0644\"")),
    }
);

impl FileMode {
    pub fn bits(&self) -> u32 {
        u32::from_str_radix(&self.0, 8).expect("validated")
    }
}

//! `include = ["teams.d/*.toml"]`: one file per team.
//!
//! Rules:
//! - `include` is a top-level key of the main file only: a list of paths, relative ones
//!   resolved against the main file's directory. In the last path component `*` matches any
//!   run of characters and `?` one character; names starting with `.` never match a wildcard
//!   (editors' swap files, Kubernetes' `..data` entries). Matches are taken in sorted order,
//!   patterns in their order, a file matched twice once. A pattern without a wildcard names a
//!   file that must exist; a wildcard matching nothing is no error (an empty `teams.d/`).
//! - An included file holds one team: its `[[providers]]` (any number) and exactly one
//!   `[[tenants]]` entry with its chains. Any other key (e.g. `[server]`) is an error naming the
//!   included file and the main file.
//! - Validated together with the main file: a provider or tenant name defined in two files is
//!   an error naming both; a team's tenant may name its own providers and the main file's
//!   (shared) ones, never another team's; every other problem of an included file carries its
//!   path (and the entry's index within that file).
//!
//! [`Sources::read`] is the only I/O; matching ([`matches`]) and merging are pure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ConfigError;
use crate::raw::{RawConfig, RawProvider, RawTenant};

/// One file of a configuration and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file (relative ones relative to the working directory, as given).
    pub path: PathBuf,
    /// Its content.
    pub text: String,
}

/// Every file of a configuration: the main file and the files its `include` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The main file.
    pub main: Source,
    /// The included files, in include order.
    pub included: Vec<Source>,
    /// The directories `include` looks in (to watch them); empty without `include`.
    pub include_dirs: Vec<PathBuf>,
    /// Whether `include` was expanded (false for text parsed without its directory).
    pub(crate) expanded: bool,
}

impl Sources {
    /// Text alone, named `origin` in errors; an `include` in it is an error (nothing is read).
    pub fn inline(text: &str, origin: &Path) -> Sources {
        Sources {
            main: Source { path: origin.to_owned(), text: text.to_owned() },
            included: Vec::new(),
            include_dirs: Vec::new(),
            expanded: false,
        }
    }

    /// Reads the main file and every file its `include` names (see the module doc). A main
    /// file that is not valid TOML is returned as is: [`crate::Config::from_sources`] reports it.
    pub fn read(path: &Path) -> Result<Sources, ConfigError> {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_owned(), source });
        let text = read(path)?;
        let patterns = include_patterns(&text);
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut included: Vec<Source> = Vec::new();
        let mut include_dirs: Vec<PathBuf> = Vec::new();
        for pattern in &patterns {
            let full = base.join(pattern);
            let dir = full.parent().map(Path::to_path_buf).unwrap_or_else(|| base.clone());
            let name = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !include_dirs.contains(&dir) {
                include_dirs.push(dir.clone());
            }
            let files: Vec<PathBuf> = if has_wildcard(&name) {
                let mut names: Vec<String> = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries
                        .flatten()
                        .filter(|e| e.path().is_file())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| matches(&name, n))
                        .collect(),
                    Err(source) => return Err(ConfigError::Read { path: dir, source }),
                };
                names.sort();
                names.into_iter().map(|n| dir.join(n)).collect()
            } else {
                vec![full]
            };
            for f in files {
                if f != path && !included.iter().any(|s| s.path == f) {
                    included.push(Source { text: read(&f)?, path: f });
                }
            }
        }
        Ok(Sources { main: Source { path: path.to_owned(), text }, included, include_dirs, expanded: true })
    }

    /// One text standing for every file: the main file's text alone without includes (so its
    /// SHA-256 is the file's), else followed by each included file's path and text.
    pub fn digest_text(&self) -> String {
        let mut out = self.main.text.clone();
        for s in &self.included {
            out.push_str(&format!("\n\0{}\0\n", s.path.display()));
            out.push_str(&s.text);
        }
        out
    }

    /// Every file, the main one first.
    pub fn files(&self) -> impl Iterator<Item = &Source> {
        std::iter::once(&self.main).chain(&self.included)
    }
}

/// The `include` list of a main file's text (empty when absent or not a list of strings:
/// parsing the file reports that).
fn include_patterns(text: &str) -> Vec<String> {
    let Ok(table) = toml::from_str::<toml::Table>(text) else { return Vec::new() };
    match table.get("include") {
        Some(toml::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

fn has_wildcard(name: &str) -> bool {
    name.contains(['*', '?'])
}

/// Pure: whether the file name `name` matches `pattern` (`*` any run, `?` one character;
/// a name starting with `.` matches only a pattern starting with `.`).
pub fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative wildcard matching with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// An included file as written: one team.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    tenants: Vec<RawTenant>,
}

/// Where each entry of the merged raw configuration came from.
pub(crate) struct Merged {
    pub raw: RawConfig,
    /// Per provider of `raw.providers`: (file index in [`Sources::files`], index in that file).
    pub providers: Vec<(usize, usize)>,
    /// Per tenant of `raw.tenants` (not the default tenant): the same.
    pub tenants: Vec<(usize, usize)>,
}

/// Pure: merges the included teams into the main file's raw configuration, checking the
/// include rules (see the module doc). Problems are `file: key: reason` lines.
pub(crate) fn merge(sources: &Sources, mut raw: RawConfig) -> Result<Merged, ConfigError> {
    let main = &sources.main.path;
    if !sources.expanded && !raw.include.is_empty() {
        return Err(ConfigError::Invalid {
            path: main.clone(),
            problems: vec![
                "include: included files are read only when the configuration is loaded from its file".into(),
            ],
        });
    }
    let mut providers: Vec<(usize, usize)> = (0..raw.providers.len()).map(|i| (0, i)).collect();
    let mut tenants: Vec<(usize, usize)> = (0..raw.tenants.len()).map(|i| (0, i)).collect();
    let mut teams = Vec::new();
    for (f, s) in sources.included.iter().enumerate() {
        let included = |message: String| ConfigError::Included { path: s.path.clone(), main: main.clone(), message };
        let team: RawTeam = toml::from_str(&s.text).map_err(|e| {
            included(format!("{e}(an included file holds one team: its [[providers]] and one [[tenants]] entry)"))
        })?;
        if team.tenants.len() != 1 {
            return Err(included(format!(
                "tenants: an included file holds exactly one [[tenants]] entry (its team's), found {}",
                team.tenants.len()
            )));
        }
        teams.push((f + 1, team));
    }
    let file = |f: usize| sources.files().nth(f).map(|s| s.path.display().to_string()).unwrap_or_default();
    let mut problems = Vec::new();
    // Name clashes, across every file.
    let mut provider_file: HashMap<String, usize> = raw.providers.iter().map(|p| (p.name.clone(), 0)).collect();
    let mut tenant_file: HashMap<String, usize> = raw.tenants.iter().map(|t| (t.name.clone(), 0)).collect();
    for (f, team) in &teams {
        for (i, p) in team.providers.iter().enumerate() {
            match provider_file.get(&p.name) {
                Some(other) if other != f => problems.push(format!(
                    "{}: providers[{i}] ({}).name: also defined in {}",
                    file(*f),
                    p.name,
                    file(*other)
                )),
                _ => {
                    provider_file.insert(p.name.clone(), *f);
                }
            }
        }
        let t = &team.tenants[0];
        match tenant_file.get(&t.name) {
            Some(other) => {
                problems.push(format!("{}: tenants[0] ({}).name: also defined in {}", file(*f), t.name, file(*other)))
            }
            None => {
                tenant_file.insert(t.name.clone(), *f);
            }
        }
    }
    // A team names its own and the main file's providers, never another team's.
    for (f, team) in &teams {
        let t = &team.tenants[0];
        let named = t.providers.iter().flatten().map(|n| ("providers".to_owned(), n));
        let chained = t.chains.iter().flat_map(|(hook, chain)| {
            chain.iter().filter_map(|m| m.name()).map(move |n| (format!("chains.{hook:?}"), n))
        });
        for (key, name) in named.map(|(k, n)| (k, n.as_str())).chain(chained) {
            if let Some(other) = provider_file.get(name)
                && *other != 0
                && other != f
            {
                problems.push(format!(
                    "{}: tenants[0] ({}).{key}: provider {name:?} belongs to another team ({})",
                    file(*f),
                    t.name,
                    file(*other)
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { path: main.clone(), problems });
    }
    for (f, team) in teams {
        providers.extend((0..team.providers.len()).map(|i| (f, i)));
        tenants.push((f, 0));
        raw.providers.extend(team.providers);
        raw.tenants.extend(team.tenants);
    }
    Ok(Merged { raw, providers, tenants })
}

/// Rewrites a resolution problem about a merged entry (`providers[i] (...` or
/// `tenants[i] (...`) to name the file it came from and its index there.
pub(crate) fn attribute(
    problem: String,
    sources: &Sources,
    providers: &[(usize, usize)],
    tenants: &[(usize, usize)],
) -> String {
    for (prefix, origins) in [("providers[", providers), ("tenants[", tenants)] {
        let Some(rest) = problem.strip_prefix(prefix) else { continue };
        let Some((index, tail)) = rest.split_once(']') else { continue };
        let Some(&(f, i)) = index.parse::<usize>().ok().and_then(|k| origins.get(k)) else { continue };
        if f == 0 {
            return problem;
        }
        let path = sources.files().nth(f).map(|s| s.path.display().to_string()).unwrap_or_default();
        return format!("{path}: {prefix}{i}]{tail}");
    }
    problem
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_match_file_names() {
        assert!(matches("*.toml", "factory-c.toml"));
        assert!(matches("team-?.toml", "team-a.toml"));
        assert!(matches("*", "x"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("*.toml", "factory-c.toml.swp"));
        assert!(!matches("*.toml", ".factory-c.toml"), "hidden files never match a wildcard");
        assert!(!matches("*.toml", "..data"));
        assert!(!matches("team-?.toml", "team-ab.toml"));
        assert!(matches("exact.toml", "exact.toml"));
    }
}

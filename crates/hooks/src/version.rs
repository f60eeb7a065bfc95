use std::fmt;
use std::str::FromStr;

/// One of the protobuf packages EMQX uses for ExHook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// `emqx.exhook.v1`: EMQX 4.x.
    V1 = 1,
    /// `emqx.exhook.v2`: EMQX 5.0–5.8.
    V2 = 2,
    /// `emqx.exhook.v3`: EMQX e5.9+, 5.10, 6.x.
    V3 = 3,
}

impl Version {
    /// All packages, newest first (the order `auto` probes providers in).
    pub const NEWEST_FIRST: [Version; 3] = [Version::V3, Version::V2, Version::V1];

    /// The protobuf package name.
    pub const fn package(self) -> &'static str {
        match self {
            Version::V1 => "emqx.exhook.v1",
            Version::V2 => "emqx.exhook.v2",
            Version::V3 => "emqx.exhook.v3",
        }
    }

    /// The fully qualified gRPC service name.
    pub const fn service(self) -> &'static str {
        match self {
            Version::V1 => "emqx.exhook.v1.HookProvider",
            Version::V2 => "emqx.exhook.v2.HookProvider",
            Version::V3 => "emqx.exhook.v3.HookProvider",
        }
    }

    /// The short name used in configuration and metrics: `v1`, `v2`, `v3`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
            Version::V3 => "v3",
        }
    }

    /// Index 0..3, for tables indexed by version.
    pub const fn index(self) -> usize {
        self as usize - 1
    }

    /// Inverse of [`Version::index`].
    pub const fn from_index(i: usize) -> Option<Version> {
        match i {
            0 => Some(Version::V1),
            1 => Some(Version::V2),
            2 => Some(Version::V3),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol name that is not `v1`, `v2` or `v3`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ExHook protocol {0:?} (expected v1, v2 or v3)")]
pub struct ParseVersionError(pub String);

impl FromStr for Version {
    type Err = ParseVersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" => Ok(Version::V1),
            "v2" => Ok(Version::V2),
            "v3" => Ok(Version::V3),
            other => Err(ParseVersionError(other.to_owned())),
        }
    }
}

//! The file as written: strings where the validated config has types, so that validation can
//! name the key of every bad value.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub chains: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<String>,
    pub default_deadline: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub name: String,
    pub url: String,
    pub protocol: Option<String>,
    pub timeout: Option<String>,
    pub failed_action: Option<String>,
    pub notify: Option<String>,
    pub queue_size: Option<i64>,
    pub queue_shards: Option<i64>,
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    pub name: String,
    #[serde(default)]
    pub cluster_names: Vec<String>,
    pub providers: Option<Vec<String>>,
    #[serde(default)]
    pub chains: BTreeMap<String, Vec<String>>,
}

//! The report: every verdict, rendered as a `check | result | reason` table or as JSON.

use std::time::Duration;

use exhook_hooks::{Hook, Version};

use crate::check::{CheckId, Outcome, Verdict, emqx_lines, fmt_duration, hook_name};

/// What a run found: one verdict per check, in [`CheckId::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The provider's URL.
    pub provider: String,
    /// The package the checks ran in (`None`: the provider answered in none).
    pub package: Option<Version>,
    /// The deadline every call had.
    pub timeout: Duration,
    /// The hooks driven (the valid ones the provider registered), in call order of first use.
    pub hooks: Vec<Hook>,
    /// One verdict per check.
    pub verdicts: Vec<Verdict>,
}

impl Report {
    /// The verdict of one check.
    pub fn verdict(&self, check: CheckId) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.check == check)
    }

    /// True when no check failed (skipped checks do not fail a provider).
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.outcome != Outcome::Fail)
    }

    /// The process exit code: 0 when every check passed or was skipped, 1 when one failed.
    pub fn exit_code(&self) -> u8 {
        if self.passed() { 0 } else { 1 }
    }

    /// The hooks driven, named as the provider's package spells them.
    pub fn hook_names(&self) -> Vec<&'static str> {
        self.hooks.iter().map(|h| self.package.map_or(h.name(), |v| hook_name(*h, v))).collect()
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.verdicts.iter().filter(|v| v.outcome == outcome).count()
    }

    /// The human report: a header, the `check | result | reason` table and a summary line.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let package = match self.package {
            Some(v) => format!("{} ({})", v.package(), emqx_lines(v)),
            None => "no package".to_owned(),
        };
        out.push_str(&format!(
            "conformance of {} in {package}, deadline {}\n",
            self.provider,
            fmt_duration(self.timeout)
        ));
        if self.hooks.is_empty() {
            out.push_str("hooks driven: none\n\n");
        } else {
            let names = self.hook_names();
            out.push_str(&format!("hooks driven ({}): {}\n\n", names.len(), names.join(", ")));
        }
        let width = CheckId::ALL.iter().map(|c| c.name().len()).max().unwrap_or(5).max("check".len());
        out.push_str(&format!("{:<width$} | result | reason\n", "check"));
        out.push_str(&format!("{}-+--------+-{}\n", "-".repeat(width), "-".repeat(6)));
        for v in &self.verdicts {
            out.push_str(&format!("{:<width$} | {:<6} | {}\n", v.check.name(), v.outcome.label(), v.reason));
        }
        out.push_str(&format!(
            "\n{} checks: {} pass, {} fail, {} skip: {}\n",
            self.verdicts.len(),
            self.count(Outcome::Pass),
            self.count(Outcome::Fail),
            self.count(Outcome::Skip),
            if self.passed() { "CONFORMS" } else { "DOES NOT CONFORM" }
        ));
        out
    }

    /// The report as one JSON object (`provider`, `package`, `timeout_ms`, `hooks`, `checks`
    /// with `check`/`result`/`reason`, `passed`).
    pub fn to_json(&self) -> serde_json::Value {
        let checks: Vec<serde_json::Value> = self
            .verdicts
            .iter()
            .map(|v| {
                serde_json::json!({
                    "check": v.check.name(),
                    "result": v.outcome.label().to_ascii_lowercase(),
                    "reason": v.reason,
                })
            })
            .collect();
        serde_json::json!({
            "provider": self.provider,
            "package": self.package.map(|v| v.as_str()),
            "timeout_ms": u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            "hooks": self.hook_names(),
            "checks": checks,
            "passed": self.passed(),
        })
    }
}

//! The configuration form of the [`RulePolicy`], deserialisable with serde from TOML,
//! YAML or JSON.
//!
//! ```toml
//! [[rules]]
//! name = "no-ddl-in-prod"
//! resources = ["prod-*"]
//! actions = ["ddl", "destructive"]
//! decision = "deny"
//! reason = "schema changes go through migrations"
//!
//! [[rules]]
//! name = "prod-writes"
//! resources = ["prod-*"]
//! actions = ["write"]
//! decision = "review"
//!
//! [[rules]]
//! name = "dba"
//! groups = ["dba"]
//! actions = ["any"]        # connect + every class except `unknown`
//! decision = "allow"
//!
//! [[rules]]
//! name = "devs-read-staging"
//! groups = ["dev"]
//! labels = { env = "staging" }
//! actions = ["connect", "read"]
//! decision = "allow"
//! ```
//!
//! Keys of a rule: `name` (required, unique), `subjects`, `groups`, `resources`,
//! `protocols` (lists; a single string is accepted too; empty or absent means any),
//! `labels` (table of resource labels that must all be equal), `actions` (required, not
//! empty: `connect`, `any`, `read`, `write`, `ddl`, `destructive`, `admin`, `unknown`;
//! `any` is `connect` plus every class except `unknown`, which must be named), `decision`
//! (required: `allow`, `deny`, `review`), `reason` (deny and review only).
//! A request that no rule matches is denied.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::rules::{ActionMatch, Rule, RuleDecision, RulePolicy};
use crate::glob::Glob;

/// The policy configuration: an ordered list of rules.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// One rule as written in configuration; checked by [`RulePolicy::from_config`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RuleConfig {
    /// Rule name.
    #[serde(default)]
    pub name: String,
    /// Subject glob patterns.
    #[serde(default, deserialize_with = "one_or_many")]
    pub subjects: Vec<String>,
    /// Groups.
    #[serde(default, deserialize_with = "one_or_many")]
    pub groups: Vec<String>,
    /// Resource name glob patterns.
    #[serde(default, deserialize_with = "one_or_many")]
    pub resources: Vec<String>,
    /// Resource protocols.
    #[serde(default, deserialize_with = "one_or_many")]
    pub protocols: Vec<String>,
    /// Required resource labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Action names.
    #[serde(default, deserialize_with = "one_or_many")]
    pub actions: Vec<String>,
    /// `allow`, `deny` or `review`.
    #[serde(default)]
    pub decision: String,
    /// Explanation for deny and review.
    #[serde(default)]
    pub reason: Option<String>,
    /// Keys that are not part of a rule (reported as errors).
    #[serde(flatten, default, skip_serializing)]
    unknown: BTreeMap<String, IgnoredAny>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(vec![s]),
        Ok(OneOrMany::Many(v)) => Ok(v),
        Err(_) => Err(serde::de::Error::custom(
            "expected a string or a list of strings",
        )),
    }
}

/// A configuration error, naming the rule (by position and name) and the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyConfigError {
    /// 1-based position of the rule.
    pub index: usize,
    /// The rule's name (may be empty when the name itself is the problem).
    pub rule: String,
    /// The offending key (`actions`, `decision`, ...).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy rule #{}", self.index)?;
        if !self.rule.is_empty() {
            write!(f, " {:?}", self.rule)?;
        }
        write!(f, ": key {:?}: {}", self.key, self.message)
    }
}

impl RuleConfig {
    fn to_rule(&self, index: usize) -> Result<Rule, PolicyConfigError> {
        let err = |key: &str, message: String| PolicyConfigError {
            index,
            rule: self.name.clone(),
            key: key.to_owned(),
            message,
        };
        if let Some(key) = self.unknown.keys().next() {
            return Err(err(
                key,
                "unknown key (expected name, subjects, groups, resources, protocols, labels, actions, decision, reason)".into(),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(err("name", "every rule needs a name".into()));
        }
        let non_empty = |key: &str, items: &[String]| {
            if items.iter().any(|s| s.is_empty()) {
                Err(err(key, "empty entry".into()))
            } else {
                Ok(())
            }
        };
        non_empty("subjects", &self.subjects)?;
        non_empty("groups", &self.groups)?;
        non_empty("resources", &self.resources)?;
        non_empty("protocols", &self.protocols)?;
        if self.labels.keys().any(String::is_empty) {
            return Err(err("labels", "empty label name".into()));
        }
        if self.actions.is_empty() {
            return Err(err(
                "actions",
                format!(
                    "must list at least one of: {}",
                    ActionMatch::NAMES.join(", ")
                ),
            ));
        }
        let mut actions = ActionMatch::none();
        for a in &self.actions {
            let m = ActionMatch::parse(a).ok_or_else(|| {
                err(
                    "actions",
                    format!(
                        "unknown action {a:?} (expected one of: {})",
                        ActionMatch::NAMES.join(", ")
                    ),
                )
            })?;
            actions = actions.union(m);
        }
        let reason = self.reason.clone().unwrap_or_default();
        let decision = match self.decision.to_ascii_lowercase().as_str() {
            "allow" => {
                if self.reason.is_some() {
                    return Err(err(
                        "reason",
                        "only deny and review rules take a reason".into(),
                    ));
                }
                RuleDecision::Allow
            }
            "deny" => RuleDecision::Deny(reason),
            "review" => RuleDecision::Review(reason),
            "" => return Err(err("decision", "missing (allow, deny or review)".into())),
            other => {
                return Err(err(
                    "decision",
                    format!("unknown decision {other:?} (expected allow, deny or review)"),
                ));
            }
        };
        Ok(Rule {
            name: self.name.clone(),
            subjects: self.subjects.iter().map(Glob::new).collect(),
            groups: self.groups.clone(),
            resources: self.resources.iter().map(Glob::new).collect(),
            protocols: self.protocols.clone(),
            labels: self.labels.clone(),
            actions,
            decision,
        })
    }
}

impl RulePolicy {
    /// Builds a policy from its configuration form, checking every rule.
    pub fn from_config(config: &PolicyConfig) -> Result<RulePolicy, PolicyConfigError> {
        let mut rules: Vec<Rule> = Vec::with_capacity(config.rules.len());
        for (i, rc) in config.rules.iter().enumerate() {
            let rule = rc.to_rule(i + 1)?;
            if let Some(first) = rules.iter().position(|r| r.name == rule.name) {
                return Err(PolicyConfigError {
                    index: i + 1,
                    rule: rule.name,
                    key: "name".into(),
                    message: format!("duplicate name (also rule #{})", first + 1),
                });
            }
            rules.push(rule);
        }
        Ok(RulePolicy::new(rules))
    }
}

impl TryFrom<&PolicyConfig> for RulePolicy {
    type Error = PolicyConfigError;
    fn try_from(config: &PolicyConfig) -> Result<Self, Self::Error> {
        RulePolicy::from_config(config)
    }
}

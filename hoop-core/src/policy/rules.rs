//! The built-in rule policy. (Implemented by the policy work item.)

/// One policy rule.
#[derive(Clone, Debug)]
pub struct Rule;

/// A policy made of ordered rules.
#[derive(Clone, Debug)]
pub struct RulePolicy;

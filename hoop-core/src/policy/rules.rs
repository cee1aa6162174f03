//! The built-in rule policy: ordered rules, the first matching rule decides, and when no
//! rule matches the answer is deny.
//!
//! ```
//! use hoop_core::policy::{ActionMatch, Rule, RulePolicy};
//! use hoop_core::ActionClass;
//!
//! let policy = RulePolicy::new(vec![
//!     Rule::deny("no-ddl-in-prod", "schema changes go through migrations")
//!         .resources(["prod-*"])
//!         .actions(ActionMatch::classes([ActionClass::Ddl, ActionClass::Destructive])),
//!     Rule::review("prod-writes", "writes on production need a second pair of eyes")
//!         .resources(["prod-*"])
//!         .actions(ActionMatch::class(ActionClass::Write)),
//!     Rule::allow("dba").groups(["dba"]).actions(ActionMatch::any()),
//! ]);
//! # let _ = policy;
//! ```

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{Decision, Policy, Request};
use crate::glob::Glob;
use crate::{Action, ActionClass};

/// Which actions a [`Rule`] covers: opening a session ([`Action::Connect`]) and/or
/// commands of some [`ActionClass`]es.
///
/// [`ActionClass::Unknown`] is only ever covered when named explicitly: [`any`](Self::any)
/// leaves it out, so a rule written for known actions never lets an unclassified command
/// through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ActionMatch {
    connect: bool,
    classes: u8,
}

fn bit(c: ActionClass) -> u8 {
    match c {
        ActionClass::Read => 1,
        ActionClass::Write => 1 << 1,
        ActionClass::Ddl => 1 << 2,
        ActionClass::Destructive => 1 << 3,
        ActionClass::Admin => 1 << 4,
        ActionClass::Unknown => 1 << 5,
    }
}

impl ActionMatch {
    /// Configuration names [`parse`](Self::parse) accepts.
    pub const NAMES: [&'static str; 8] = [
        "connect",
        "any",
        "read",
        "write",
        "ddl",
        "destructive",
        "admin",
        "unknown",
    ];

    /// Matches nothing.
    pub const fn none() -> Self {
        ActionMatch {
            connect: false,
            classes: 0,
        }
    }

    /// Matches [`Action::Connect`] only.
    pub const fn connect() -> Self {
        ActionMatch {
            connect: true,
            classes: 0,
        }
    }

    /// Matches commands of one class.
    pub fn class(class: ActionClass) -> Self {
        Self::none().with_class(class)
    }

    /// Matches commands of these classes.
    pub fn classes(classes: impl IntoIterator<Item = ActionClass>) -> Self {
        classes.into_iter().fold(Self::none(), Self::with_class)
    }

    /// Matches [`Action::Connect`] and commands of every class except
    /// [`ActionClass::Unknown`] (configuration name `any`).
    pub fn any() -> Self {
        let mut m = Self::classes(
            ActionClass::ALL
                .into_iter()
                .filter(|c| *c != ActionClass::Unknown),
        );
        m.connect = true;
        m
    }

    /// Also matches [`Action::Connect`].
    pub fn with_connect(mut self) -> Self {
        self.connect = true;
        self
    }

    /// Also matches commands of `class`.
    pub fn with_class(mut self, class: ActionClass) -> Self {
        self.classes |= bit(class);
        self
    }

    /// Adds what `other` matches.
    pub fn union(self, other: ActionMatch) -> Self {
        ActionMatch {
            connect: self.connect || other.connect,
            classes: self.classes | other.classes,
        }
    }

    /// Parses one configuration name: `connect`, `any`, or a class name (`read`, `write`,
    /// `ddl`, `destructive`, `admin`, `unknown`), case-insensitive.
    pub fn parse(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("connect") {
            Some(Self::connect())
        } else if name.eq_ignore_ascii_case("any") {
            Some(Self::any())
        } else {
            ActionClass::parse(name).map(Self::class)
        }
    }

    /// Whether [`Action::Connect`] is covered.
    pub fn covers_connect(&self) -> bool {
        self.connect
    }

    /// Whether commands of `class` are covered.
    pub fn covers(&self, class: ActionClass) -> bool {
        self.classes & bit(class) != 0
    }

    /// Whether nothing is covered.
    pub fn is_empty(&self) -> bool {
        !self.connect && self.classes == 0
    }

    /// Whether `action` is covered.
    pub fn matches(&self, action: &Action) -> bool {
        match action {
            Action::Connect => self.connect,
            Action::Command(c) => self.covers(c.class),
        }
    }
}

/// What a matching [`Rule`] decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleDecision {
    /// Allow.
    Allow,
    /// Deny, with an optional explanation (may be empty). The user sees
    /// `denied by rule "NAME": REASON`.
    Deny(String),
    /// Hold for a just-in-time approval, with an optional explanation (may be empty).
    /// The user sees `review required by rule "NAME": REASON`.
    Review(String),
}

/// One rule. A rule matches a [`Request`] when every condition holds; an empty list
/// condition holds for anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Name, used in decision reasons and audit (e.g. `no-ddl-in-prod`).
    pub name: String,
    /// Subject patterns; the identity's subject must match one (empty: any subject).
    pub subjects: Vec<Glob>,
    /// Groups; the identity must be in at least one (empty: any identity).
    pub groups: Vec<String>,
    /// Resource name patterns; the resource's name must match one (empty: any).
    pub resources: Vec<Glob>,
    /// Resource protocols (`postgres`, `http`, ...); empty: any.
    pub protocols: Vec<String>,
    /// Resource labels that must all be present with these values.
    pub labels: BTreeMap<String, String>,
    /// The actions covered.
    pub actions: ActionMatch,
    /// What the rule decides when it matches.
    pub decision: RuleDecision,
}

impl Rule {
    fn with_decision(name: impl Into<String>, decision: RuleDecision) -> Self {
        Rule {
            name: name.into(),
            subjects: Vec::new(),
            groups: Vec::new(),
            resources: Vec::new(),
            protocols: Vec::new(),
            labels: BTreeMap::new(),
            actions: ActionMatch::none(),
            decision,
        }
    }

    /// An allow rule covering nothing yet (set [`actions`](Self::actions)).
    pub fn allow(name: impl Into<String>) -> Self {
        Self::with_decision(name, RuleDecision::Allow)
    }

    /// A deny rule covering nothing yet.
    pub fn deny(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::with_decision(name, RuleDecision::Deny(reason.into()))
    }

    /// A review rule covering nothing yet.
    pub fn review(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::with_decision(name, RuleDecision::Review(reason.into()))
    }

    /// Adds subject patterns.
    pub fn subjects<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subjects
            .extend(patterns.into_iter().map(|p| Glob::new(p)));
        self
    }

    /// Adds groups.
    pub fn groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups.extend(groups.into_iter().map(Into::into));
        self
    }

    /// Adds resource name patterns.
    pub fn resources<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.resources
            .extend(patterns.into_iter().map(|p| Glob::new(p)));
        self
    }

    /// Adds resource protocols.
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols.extend(protocols.into_iter().map(Into::into));
        self
    }

    /// Requires a resource label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds covered actions.
    pub fn actions(mut self, actions: ActionMatch) -> Self {
        self.actions = self.actions.union(actions);
        self
    }

    /// Whether the rule matches `request`.
    pub fn matches(&self, request: &Request<'_>) -> bool {
        let (id, res) = (request.identity, request.resource);
        self.actions.matches(request.action)
            && self
                .labels
                .iter()
                .all(|(k, v)| res.labels.get(k).is_some_and(|x| x == v))
            && (self.protocols.is_empty() || self.protocols.contains(&res.protocol))
            && (self.groups.is_empty() || self.groups.iter().any(|g| id.in_group(g)))
            && (self.resources.is_empty() || self.resources.iter().any(|g| g.matches(&res.name)))
            && (self.subjects.is_empty() || self.subjects.iter().any(|g| g.matches(&id.subject)))
    }

    /// The [`Decision`] this rule gives, with its reason naming the rule.
    pub fn to_decision(&self) -> Decision {
        let with = |prefix: &str, reason: &str| {
            if reason.is_empty() {
                format!("{prefix} by rule \"{}\"", self.name)
            } else {
                format!("{prefix} by rule \"{}\": {reason}", self.name)
            }
        };
        match &self.decision {
            RuleDecision::Allow => Decision::Allow,
            RuleDecision::Deny(r) => Decision::deny(with("denied", r)),
            RuleDecision::Review(r) => Decision::review(with("review required", r)),
        }
    }
}

/// Reason given when no rule matches.
pub const NO_RULE_MATCHED: &str = "no rule matched";

/// A policy made of ordered rules: the first rule that matches decides; when none
/// matches, the request is denied with [`NO_RULE_MATCHED`]. Deciding does no I/O;
/// decisions are prepared when the policy is built.
#[derive(Clone, Debug, Default)]
pub struct RulePolicy {
    rules: Vec<Rule>,
    decisions: Vec<Decision>,
}

impl RulePolicy {
    /// A policy of `rules`, in order.
    pub fn new(rules: Vec<Rule>) -> Self {
        let decisions = rules.iter().map(Rule::to_decision).collect();
        RulePolicy { rules, decisions }
    }

    /// Appends a rule (it is consulted after the existing ones).
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.decisions.push(rule.to_decision());
        self.rules.push(rule);
        self
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule matching `request`, if any (for audit and "why" tools).
    pub fn matching_rule(&self, request: &Request<'_>) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(request))
    }

    /// Decides `request` synchronously (the [`Policy`] implementation calls this).
    pub fn evaluate(&self, request: &Request<'_>) -> Decision {
        for (rule, decision) in self.rules.iter().zip(&self.decisions) {
            if rule.matches(request) {
                return decision.clone();
            }
        }
        Decision::deny(NO_RULE_MATCHED)
    }
}

#[async_trait]
impl Policy for RulePolicy {
    async fn decide(&self, request: &Request<'_>) -> Decision {
        self.evaluate(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthMethod, Command, Identity, Resource};

    fn cmd(class: ActionClass) -> Action {
        Action::Command(Command {
            class,
            verb: "X".into(),
            text: "x".into(),
            objects: vec![],
        })
    }

    fn decide(p: &RulePolicy, id: &Identity, res: &Resource, action: &Action) -> Decision {
        p.evaluate(&Request {
            identity: id,
            resource: res,
            action,
        })
    }

    fn alice() -> Identity {
        Identity::new("alice@example.com", AuthMethod::Oidc).with_groups(["dev"])
    }

    fn dba() -> Identity {
        Identity::new("bob@example.com", AuthMethod::Oidc).with_groups(["ops", "dba"])
    }

    #[test]
    fn default_deny() {
        let p = RulePolicy::new(vec![]);
        let r = Resource::new("db", "postgres");
        assert_eq!(
            decide(&p, &alice(), &r, &Action::Connect),
            Decision::deny("no rule matched")
        );
        // A rule with no actions matches nothing.
        let p = RulePolicy::new(vec![Rule::allow("empty")]);
        assert_eq!(
            decide(&p, &alice(), &r, &cmd(ActionClass::Read)),
            Decision::deny("no rule matched")
        );
    }

    #[test]
    fn first_match_wins() {
        let prod = Resource::new("prod-db", "postgres");
        let p = RulePolicy::new(vec![
            Rule::deny("no-ddl-in-prod", "")
                .resources(["prod-*"])
                .actions(ActionMatch::class(ActionClass::Ddl)),
            Rule::allow("dba-all")
                .groups(["dba"])
                .actions(ActionMatch::any()),
        ]);
        assert_eq!(
            decide(&p, &dba(), &prod, &cmd(ActionClass::Ddl)),
            Decision::deny("denied by rule \"no-ddl-in-prod\"")
        );
        assert_eq!(
            decide(&p, &dba(), &prod, &cmd(ActionClass::Write)),
            Decision::Allow
        );
        // Reversed order: the allow comes first and wins.
        let p = RulePolicy::new(p.rules().iter().rev().cloned().collect());
        assert_eq!(
            decide(&p, &dba(), &prod, &cmd(ActionClass::Ddl)),
            Decision::Allow
        );
    }

    #[test]
    fn groups_subjects_resources_labels_protocols() {
        let prod = Resource::new("prod-db", "postgres").with_label("env", "prod");
        let stg = Resource::new("stg-db", "postgres").with_label("env", "staging");
        let api = Resource::new("prod-api", "http").with_label("env", "prod");
        let read = cmd(ActionClass::Read);
        let p = RulePolicy::new(vec![
            Rule::allow("dba")
                .groups(["dba"])
                .actions(ActionMatch::class(ActionClass::Read)),
            Rule::allow("alice-staging")
                .subjects(["alice@*"])
                .label("env", "staging")
                .actions(ActionMatch::class(ActionClass::Read)),
            Rule::review("prod-http", "ask")
                .resources(["prod-*"])
                .protocols(["http"])
                .actions(ActionMatch::class(ActionClass::Read)),
        ]);
        assert_eq!(decide(&p, &dba(), &prod, &read), Decision::Allow);
        assert_eq!(decide(&p, &alice(), &stg, &read), Decision::Allow);
        assert_eq!(
            decide(&p, &alice(), &prod, &read),
            Decision::deny("no rule matched")
        );
        assert_eq!(
            decide(&p, &alice(), &api, &read),
            Decision::review("review required by rule \"prod-http\": ask")
        );
        let carol = Identity::new("carol@example.com", AuthMethod::Oidc).with_groups(["dev"]);
        assert_eq!(
            decide(&p, &carol, &stg, &read),
            Decision::deny("no rule matched")
        );
        // A label that is absent never matches.
        let unlabelled = Resource::new("stg-db", "postgres");
        assert_eq!(
            decide(&p, &alice(), &unlabelled, &read),
            Decision::deny("no rule matched")
        );
    }

    #[test]
    fn connect_versus_commands() {
        let r = Resource::new("db", "postgres");
        let p = RulePolicy::new(vec![
            Rule::allow("connect")
                .groups(["dev"])
                .actions(ActionMatch::connect()),
        ]);
        assert_eq!(decide(&p, &alice(), &r, &Action::Connect), Decision::Allow);
        for c in ActionClass::ALL {
            assert_eq!(
                decide(&p, &alice(), &r, &cmd(c)),
                Decision::deny("no rule matched"),
                "{c}"
            );
        }
        let p = RulePolicy::new(vec![
            Rule::allow("reads").actions(ActionMatch::class(ActionClass::Read)),
        ]);
        assert_eq!(
            decide(&p, &alice(), &r, &Action::Connect),
            Decision::deny("no rule matched")
        );
    }

    #[test]
    fn unknown_is_never_covered_implicitly() {
        let r = Resource::new("db", "postgres");
        let unknown = cmd(ActionClass::Unknown);
        let p = RulePolicy::new(vec![
            Rule::allow("read").actions(ActionMatch::class(ActionClass::Read)),
            Rule::allow("any").actions(ActionMatch::any()),
        ]);
        assert_eq!(
            decide(&p, &dba(), &r, &unknown),
            Decision::deny("no rule matched")
        );
        assert!(!ActionMatch::any().covers(ActionClass::Unknown));
        assert!(ActionMatch::any().covers_connect());
        let p = p.with_rule(
            Rule::review("unknown", "unclassified")
                .actions(ActionMatch::class(ActionClass::Unknown)),
        );
        assert_eq!(
            decide(&p, &dba(), &r, &unknown),
            Decision::review("review required by rule \"unknown\": unclassified")
        );
    }

    #[test]
    fn matching_rule_names_the_rule() {
        let r = Resource::new("db", "postgres");
        let p = RulePolicy::new(vec![Rule::allow("all").actions(ActionMatch::any())]);
        let req = Request {
            identity: &alice(),
            resource: &r,
            action: &Action::Connect,
        };
        assert_eq!(p.matching_rule(&req).map(|r| r.name.as_str()), Some("all"));
    }
}

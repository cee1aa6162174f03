//! The rule policy built from its TOML configuration form.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use hoop_core::policy::{PolicyConfig, RulePolicy};
use hoop_core::{
    Action, ActionClass, AuthMethod, Command, Decision, Identity, Policy, Request, Resource,
};

fn policy(toml_text: &str) -> RulePolicy {
    let cfg: PolicyConfig = toml::from_str(toml_text).unwrap();
    RulePolicy::from_config(&cfg).unwrap()
}

fn config_error(toml_text: &str) -> String {
    let cfg: PolicyConfig = toml::from_str(toml_text).unwrap();
    RulePolicy::from_config(&cfg).unwrap_err().to_string()
}

fn cmd(class: ActionClass) -> Action {
    Action::Command(Command {
        class,
        verb: class.as_str().to_uppercase(),
        text: format!("{class} something"),
        objects: vec![],
    })
}

async fn decide(p: &RulePolicy, id: &Identity, res: &Resource, action: &Action) -> Decision {
    p.decide(&Request {
        identity: id,
        resource: res,
        action,
    })
    .await
}

const EXAMPLE: &str = r#"
[[rules]]
name = "no-ddl-in-prod"
resources = ["prod-*"]
actions = ["ddl", "destructive"]
decision = "deny"
reason = "schema changes go through migrations"

[[rules]]
name = "prod-writes"
resources = "prod-*"
actions = ["write"]
decision = "review"

[[rules]]
name = "dba"
groups = ["dba"]
actions = ["any"]
decision = "allow"

[[rules]]
name = "devs-read-staging"
groups = ["dev"]
labels = { env = "staging" }
actions = ["connect", "read"]
decision = "allow"

[[rules]]
name = "ci-bot"
subjects = ["ci-*"]
protocols = ["http"]
actions = ["connect", "read", "write"]
decision = "allow"
"#;

#[tokio::test]
async fn example_configuration_decides() {
    let p = policy(EXAMPLE);
    assert_eq!(p.rules().len(), 5);
    let dba = Identity::new("bob", AuthMethod::Oidc).with_groups(["dba"]);
    let dev = Identity::new("alice", AuthMethod::Oidc).with_groups(["dev"]);
    let ci = Identity::new("ci-deploy", AuthMethod::StaticToken);
    let prod = Resource::new("prod-db", "postgres").with_label("env", "prod");
    let stg = Resource::new("stg-db", "postgres").with_label("env", "staging");
    let api = Resource::new("stg-api", "http");

    assert_eq!(
        decide(&p, &dba, &prod, &cmd(ActionClass::Ddl)).await,
        Decision::deny("denied by rule \"no-ddl-in-prod\": schema changes go through migrations")
    );
    assert_eq!(
        decide(&p, &dba, &prod, &cmd(ActionClass::Write)).await,
        Decision::review("review required by rule \"prod-writes\"")
    );
    assert_eq!(
        decide(&p, &dba, &prod, &Action::Connect).await,
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &dba, &prod, &cmd(ActionClass::Admin)).await,
        Decision::Allow
    );
    // `any` does not cover unclassified commands.
    assert_eq!(
        decide(&p, &dba, &prod, &cmd(ActionClass::Unknown)).await,
        Decision::deny("no rule matched")
    );
    assert_eq!(
        decide(&p, &dev, &stg, &Action::Connect).await,
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &dev, &stg, &cmd(ActionClass::Read)).await,
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &dev, &stg, &cmd(ActionClass::Write)).await,
        Decision::deny("no rule matched")
    );
    assert_eq!(
        decide(&p, &dev, &prod, &Action::Connect).await,
        Decision::deny("no rule matched")
    );
    assert_eq!(
        decide(&p, &ci, &api, &cmd(ActionClass::Write)).await,
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &ci, &stg, &cmd(ActionClass::Write)).await,
        Decision::deny("no rule matched")
    );
}

#[tokio::test]
async fn read_rule_never_allows_unknown() {
    let p = policy(
        r#"
[[rules]]
name = "readers"
actions = ["read"]
decision = "allow"
"#,
    );
    let id = Identity::new("x", AuthMethod::Oidc);
    let r = Resource::new("db", "postgres");
    assert_eq!(
        decide(&p, &id, &r, &cmd(ActionClass::Read)).await,
        Decision::Allow
    );
    for c in [ActionClass::Unknown, ActionClass::Write, ActionClass::Admin] {
        assert_eq!(
            decide(&p, &id, &r, &cmd(c)).await,
            Decision::deny("no rule matched"),
            "{c}"
        );
    }
    assert_eq!(
        decide(&p, &id, &r, &Action::Connect).await,
        Decision::deny("no rule matched")
    );
}

#[test]
fn empty_configuration_denies_everything() {
    let p = policy("");
    let id = Identity::new("x", AuthMethod::Oidc);
    let r = Resource::new("db", "postgres");
    let d = p.evaluate(&Request {
        identity: &id,
        resource: &r,
        action: &Action::Connect,
    });
    assert_eq!(d, Decision::deny("no rule matched"));
}

#[test]
fn configuration_errors_name_rule_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[[rules]]\nname = \"r1\"\nactions = [\"reed\"]\ndecision = \"allow\"\n",
            "policy rule #1 \"r1\": key \"actions\": unknown action \"reed\"",
        ),
        (
            "[[rules]]\nname = \"r1\"\nactions = [\"read\"]\ndecision = \"allow\"\n[[rules]]\nname = \"r2\"\nactions = [\"read\"]\ndecision = \"permit\"\n",
            "policy rule #2 \"r2\": key \"decision\": unknown decision \"permit\"",
        ),
        (
            "[[rules]]\nname = \"r1\"\nactoins = [\"read\"]\nactions = [\"read\"]\ndecision = \"allow\"\n",
            "policy rule #1 \"r1\": key \"actoins\": unknown key",
        ),
        (
            "[[rules]]\nname = \"r1\"\nactions = []\ndecision = \"allow\"\n",
            "policy rule #1 \"r1\": key \"actions\": must list at least one",
        ),
        (
            "[[rules]]\nname = \"r1\"\nactions = [\"read\"]\n",
            "policy rule #1 \"r1\": key \"decision\": missing",
        ),
        (
            "[[rules]]\nactions = [\"read\"]\ndecision = \"allow\"\n",
            "policy rule #1: key \"name\": every rule needs a name",
        ),
        (
            "[[rules]]\nname = \"a\"\nactions = [\"read\"]\ndecision = \"allow\"\n[[rules]]\nname = \"a\"\nactions = [\"read\"]\ndecision = \"deny\"\n",
            "policy rule #2 \"a\": key \"name\": duplicate name (also rule #1)",
        ),
        (
            "[[rules]]\nname = \"a\"\nactions = [\"read\"]\ndecision = \"allow\"\nreason = \"x\"\n",
            "policy rule #1 \"a\": key \"reason\": only deny and review",
        ),
        (
            "[[rules]]\nname = \"a\"\ngroups = [\"\"]\nactions = [\"read\"]\ndecision = \"allow\"\n",
            "policy rule #1 \"a\": key \"groups\": empty entry",
        ),
    ];
    for (text, expected) in cases {
        let e = config_error(text);
        assert!(
            e.starts_with(expected),
            "{text}\n got: {e}\n want: {expected}"
        );
    }
}

#[test]
fn wrongly_typed_values_are_refused_by_the_parser() {
    let r: Result<PolicyConfig, _> = toml::from_str(
        "[[rules]]\nname = \"a\"\ngroups = 3\nactions = [\"read\"]\ndecision = \"allow\"\n",
    );
    let e = r.unwrap_err().to_string();
    assert!(e.contains("expected a string or a list of strings"), "{e}");
    let r: Result<PolicyConfig, _> = toml::from_str("[policy]\nx = 1\n");
    assert!(r.is_err());
}

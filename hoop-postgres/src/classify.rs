//! Statement classification: SQL text -> [`Command`] with its [`ActionClass`].
//!
//! Every statement is parsed with sqlparser's PostgreSQL dialect. In a multi-statement
//! string the strictest class wins; statements nested in data-modifying CTEs, `EXPLAIN
//! ANALYZE` and `PREPARE` count too. Calls of functions that act on the server
//! (`pg_read_file`, `pg_terminate_backend`, `set_config`, `lo_import`, `dblink`, ...) make
//! the statement `admin` even inside a `SELECT`. What sqlparser cannot parse (`DO`,
//! `ALTER SYSTEM`, ...) is `unknown`, never treated as safe.
//!
//! Results are cached by query text (bounded), so a repeated statement is not parsed
//! again.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use hoop_core::{ActionClass, Command};
use sqlparser::ast::{
    CopyLegacyOption, CopyOption, CopySource, CopyTarget, Expr, ObjectName, ObjectType, SelectItem,
    Set, SetExpr, Statement, Visit, Visitor, visit_expressions, visit_relations, visit_statements,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Server-side functions that read files, signal backends or change settings.
const ADMIN_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_file_write",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "set_config",
    "lo_import",
    "lo_export",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "query_to_xml",
    "pg_create_restore_point",
    "pg_replication_origin_create",
];

/// Functions that write data.
const WRITE_FUNCTIONS: &[&str] = &[
    "setval",
    "nextval",
    "lo_unlink",
    "lo_create",
    "lo_put",
    "lo_from_bytea",
    "pg_advisory_lock",
    "pg_notify",
];

/// Session settings a user may not change through the gateway (they would lift the
/// gateway's own controls).
const PROTECTED_SETTINGS: &[&str] = &[
    "role",
    "session_authorization",
    "default_transaction_read_only",
    "transaction_read_only",
    "session_replication_role",
];

/// The first column masked by name (`masked(name)`: a field rule covers it) that `sql`
/// selects under another name: with an alias (`ssn AS x`) or inside an expression
/// (`ssn || ''`, `upper(ssn)`, `max(ssn)`). The result column then carries another name
/// and a field rule, which matches names, would not apply to it. Plain references
/// (`ssn`, `u.ssn`, `ssn AS ssn`) are fine. Covers every SELECT (subqueries, CTEs,
/// UNION branches, `COPY (query)`) and the RETURNING of INSERT, UPDATE and DELETE.
/// `None` also for text that does not parse (it is classified `unknown`).
///
/// ```
/// use hoop_postgres::classify::renamed_masked_column;
///
/// let masked = |c: &str| c.eq_ignore_ascii_case("ssn");
/// assert_eq!(renamed_masked_column("select ssn as x from users", &masked), Some("ssn".into()));
/// assert_eq!(renamed_masked_column("select id from (select lower(ssn) from u) t", &masked), Some("ssn".into()));
/// assert_eq!(renamed_masked_column("select u.ssn, name from users u where ssn > '1'", &masked), None);
/// ```
pub fn renamed_masked_column(sql: &str, masked: &dyn Fn(&str) -> bool) -> Option<String> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    renamed_columns(&statements).into_iter().find(|c| masked(c))
}

/// Every column name `statements` select under another name (see
/// [`renamed_masked_column`]), each once: what a session checks against its masker's
/// field rules. Literals play no part, so the list holds for every text of one literal
/// shape ([`ClassCache`] keeps it with the classification).
pub fn renamed_columns(statements: &[Statement]) -> Vec<String> {
    struct Collect(Vec<String>);
    impl Collect {
        fn add(&mut self, name: &str) {
            if !self.0.iter().any(|n| n == name) {
                self.0.push(name.to_owned());
            }
        }
        fn set_expr(&mut self, body: &SetExpr) {
            match body {
                SetExpr::Select(s) => self.items(&s.projection),
                SetExpr::SetOperation { left, right, .. } => {
                    self.set_expr(left);
                    self.set_expr(right);
                }
                // Queries are visited on their own.
                _ => {}
            }
        }
        fn items(&mut self, items: &[SelectItem]) {
            for item in items {
                let (expr, alias) = match item {
                    SelectItem::UnnamedExpr(e) => (e, None),
                    SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
                    SelectItem::ExprWithAliases { expr, .. } => (expr, None),
                    _ => continue,
                };
                match (column_name(expr), alias) {
                    (Some(_), None) => {}
                    (Some(name), Some(a)) => {
                        if !a.value.eq_ignore_ascii_case(name) {
                            self.add(name);
                        }
                    }
                    (None, _) => {
                        let _ = visit_expressions(expr, |e| {
                            if let Some(n) = column_name(e) {
                                self.add(n);
                            }
                            ControlFlow::<()>::Continue(())
                        });
                    }
                }
            }
        }
    }
    impl Visitor for Collect {
        type Break = ();
        fn pre_visit_query(&mut self, q: &sqlparser::ast::Query) -> ControlFlow<()> {
            self.set_expr(&q.body);
            ControlFlow::Continue(())
        }
        fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
            let returning = match s {
                Statement::Insert(i) => i.returning.as_deref(),
                Statement::Update(u) => u.returning.as_deref(),
                Statement::Delete(d) => d.returning.as_deref(),
                _ => None,
            };
            if let Some(items) = returning {
                self.items(items);
            }
            ControlFlow::Continue(())
        }
    }
    let mut c = Collect(Vec::new());
    for s in statements {
        let _ = s.visit(&mut c);
    }
    c.0
}

/// The column a plain reference names (`ssn`, `u.ssn`).
fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Identifier(i) => Some(&i.value),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.as_str()),
        _ => None,
    }
}

/// Whether `sql` has a `COPY ... TO STDOUT` in the binary format (`FORMAT binary`, or
/// the older `BINARY` keyword): its rows carry values the masking cannot read, so with
/// masking rules in force it is refused before it runs. Text that names both `copy` and
/// `binary` but does not parse counts as one (fail closed).
///
/// ```
/// use hoop_postgres::classify::copies_binary_out;
///
/// assert!(copies_binary_out("COPY users TO STDOUT (FORMAT binary)"));
/// assert!(copies_binary_out("copy (select * from users) to stdout with binary"));
/// assert!(!copies_binary_out("copy users to stdout (format csv)"));
/// assert!(!copies_binary_out("select 'copy binary'"));
/// ```
pub fn copies_binary_out(sql: &str) -> bool {
    names_copy_binary(sql)
        && Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .map_or(true, |statements| binary_copy_out(&statements))
}

/// Whether the text names both `copy` and `binary` (the cheap test before a parse).
fn names_copy_binary(sql: &str) -> bool {
    let has = |word: &str| {
        sql.as_bytes()
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    };
    has("copy") && has("binary")
}

/// Whether one of `statements` is a `COPY ... TO` in the binary format.
fn binary_copy_out(statements: &[Statement]) -> bool {
    statements.iter().any(|s| match s {
        Statement::Copy {
            to: true,
            options,
            legacy_options,
            ..
        } => {
            options.iter().any(
                |o| matches!(o, CopyOption::Format(f) if f.value.eq_ignore_ascii_case("binary")),
            ) || legacy_options
                .iter()
                .any(|o| matches!(o, CopyLegacyOption::Binary))
        }
        _ => false,
    })
}

/// Classifies one query string (one or more statements).
///
/// ```
/// use hoop_core::ActionClass;
/// use hoop_postgres::classify::classify;
/// assert_eq!(classify("select 1").class, ActionClass::Read);
/// assert_eq!(classify("select 1; drop table t").class, ActionClass::Destructive);
/// assert_eq!(classify("DO $$ begin end $$").class, ActionClass::Unknown);
/// ```
pub fn classify(sql: &str) -> Command {
    analyse(sql).0
}

/// [`classify`], [`renamed_columns`] and [`copies_binary_out`] from one parse.
fn analyse(sql: &str) -> (Command, Vec<String>, bool) {
    let statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(s) => s,
        Err(_) => {
            let cmd = Command {
                class: ActionClass::Unknown,
                verb: first_word(sql),
                text: sql.to_owned(),
                objects: Vec::new(),
            };
            return (cmd, Vec::new(), names_copy_binary(sql));
        }
    };
    let renamed = renamed_columns(&statements);
    let binary = names_copy_binary(sql) && binary_copy_out(&statements);
    let mut class = None::<ActionClass>;
    let mut verb = String::new();
    let mut objects = Vec::new();
    for stmt in &statements {
        let c = classify_tree(stmt);
        if class.is_none_or(|cur| c > cur) {
            verb = verb_of(stmt);
        }
        class = Some(class.map_or(c, |cur| cur.max(c)));
        let mut add = |name: String| {
            if !objects.contains(&name) {
                objects.push(name);
            }
        };
        if let Statement::Drop { names, .. } = stmt {
            names.iter().for_each(|n| add(n.to_string()));
        }
        let _ = visit_relations(stmt, |rel: &ObjectName| {
            add(rel.to_string());
            ControlFlow::<()>::Continue(())
        });
    }
    let cmd = Command {
        // An empty query string (only comments or nothing) reads nothing.
        class: class.unwrap_or(ActionClass::Read),
        verb,
        text: sql.to_owned(),
        objects,
    };
    (cmd, renamed, binary)
}

/// The strictest class of a statement and every statement nested in it.
fn classify_tree(stmt: &Statement) -> ActionClass {
    // A plain EXPLAIN plans its statement without running it.
    if let Statement::Explain { analyze: false, .. } = stmt {
        return ActionClass::Read;
    }
    let mut class = ActionClass::Read;
    let _ = visit_statements(stmt, |s: &Statement| {
        class = class.max(classify_one(s));
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions(stmt, |e: &Expr| {
        if let Expr::Function(f) = e {
            let name = f
                .name
                .0
                .last()
                .map(|p| p.to_string().to_ascii_lowercase())
                .unwrap_or_default();
            let name = name.trim_matches('"');
            if ADMIN_FUNCTIONS.contains(&name) {
                class = class.max(ActionClass::Admin);
            } else if WRITE_FUNCTIONS.contains(&name) {
                class = class.max(ActionClass::Write);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    class
}

fn query_class(q: &sqlparser::ast::Query) -> ActionClass {
    let mut class = set_expr_class(&q.body);
    if !q.locks.is_empty() {
        class = class.max(ActionClass::Write);
    }
    class
}

fn set_expr_class(body: &SetExpr) -> ActionClass {
    match body {
        SetExpr::Select(s) => {
            if s.into.is_some() {
                ActionClass::Ddl
            } else {
                ActionClass::Read
            }
        }
        SetExpr::Query(q) => query_class(q),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr_class(left).max(set_expr_class(right))
        }
        SetExpr::Values(_) | SetExpr::Table(_) => ActionClass::Read,
        // Nested data-modifying statements are visited on their own.
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            ActionClass::Write
        }
    }
}

fn classify_one(stmt: &Statement) -> ActionClass {
    use ActionClass::*;
    match stmt {
        Statement::Query(q) => query_class(q),
        Statement::Insert(_) | Statement::Merge(_) | Statement::Lock(_) => Write,
        Statement::Update(u) => {
            if u.selection.is_none() {
                Destructive
            } else {
                Write
            }
        }
        Statement::Delete(d) => {
            if d.selection.is_none() && d.using.is_none() {
                Destructive
            } else {
                Write
            }
        }
        Statement::Copy {
            source, to, target, ..
        } => match target {
            CopyTarget::Program { .. } | CopyTarget::File { .. } => Admin,
            _ if *to => match source {
                CopySource::Query(q) => query_class(q),
                CopySource::Table { .. } => Read,
            },
            _ => Write,
        },
        Statement::Truncate(_) => Destructive,
        Statement::Drop { object_type, .. } => match object_type {
            ObjectType::Role | ObjectType::User => Admin,
            _ => Destructive,
        },
        Statement::DropFunction(_)
        | Statement::DropDomain(_)
        | Statement::DropProcedure { .. }
        | Statement::DropPolicy(_)
        | Statement::DropTrigger(_)
        | Statement::DropExtension(_)
        | Statement::DropOperator(_)
        | Statement::DropOperatorFamily(_)
        | Statement::DropOperatorClass(_) => Destructive,
        Statement::AlterTable(t) => {
            let destructive = t.operations.iter().any(|op| {
                let s = format!("{op:?}");
                s.starts_with("Drop") || s.starts_with("Truncate")
            });
            if destructive { Destructive } else { Ddl }
        }
        Statement::CreateView(_)
        | Statement::CreateTable(_)
        | Statement::CreateIndex(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateSequence { .. }
        | Statement::CreateType { .. }
        | Statement::CreateDomain(_)
        | Statement::CreatePolicy(_)
        | Statement::CreateTrigger(_)
        | Statement::CreateFunction(_)
        | Statement::CreateProcedure { .. }
        | Statement::CreateCollation(_)
        | Statement::CreateOperator(_)
        | Statement::CreateOperatorFamily(_)
        | Statement::CreateOperatorClass(_)
        | Statement::CreateTextSearch(_)
        | Statement::CreateVirtualTable { .. }
        | Statement::AlterSchema(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterView { .. }
        | Statement::AlterFunction(_)
        | Statement::AlterType(_)
        | Statement::AlterCollation(_)
        | Statement::AlterOperator(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::AlterOperatorClass(_)
        | Statement::AlterTextSearch(_)
        | Statement::AlterPolicy(_)
        | Statement::RenameTable(_)
        | Statement::Comment { .. } => Ddl,
        Statement::Grant(_)
        | Statement::Revoke(_)
        | Statement::Deny(_)
        | Statement::CreateRole(_)
        | Statement::AlterRole { .. }
        | Statement::CreateUser(_)
        | Statement::AlterUser(_)
        | Statement::CreateExtension(_)
        | Statement::CreateServer(_)
        | Statement::Kill { .. }
        | Statement::Vacuum(_)
        | Statement::Analyze(_) => Admin,
        Statement::Set(set) => set_class(set),
        Statement::Explain {
            analyze, statement, ..
        } => {
            if *analyze {
                classify_tree(statement)
            } else {
                Read
            }
        }
        Statement::Prepare { statement, .. } => classify_tree(statement),
        Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCreate { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Deallocate { .. }
        | Statement::Discard { .. }
        | Statement::Reset(_)
        | Statement::LISTEN { .. }
        | Statement::UNLISTEN { .. } => Read,
        Statement::NOTIFY { .. } => Write,
        // EXECUTE of a SQL-level prepared statement, CALL, and everything else: the
        // effect is not known here.
        _ => Unknown,
    }
}

fn set_class(set: &Set) -> ActionClass {
    match set {
        Set::SetRole { .. } | Set::SetSessionAuthorization(_) => ActionClass::Admin,
        _ => {
            let text = set.to_string().to_ascii_lowercase();
            if PROTECTED_SETTINGS.iter().any(|p| text.contains(p)) || text.contains("read write") {
                ActionClass::Admin
            } else {
                ActionClass::Read
            }
        }
    }
}

fn first_word(sql: &str) -> String {
    sql.split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
        .chars()
        .take(32)
        .collect()
}

fn verb_of(stmt: &Statement) -> String {
    let s = stmt.to_string();
    let mut words = s.split_whitespace();
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" => match words.next() {
            Some(w) => format!("{first} {}", w.to_ascii_uppercase()),
            None => first,
        },
        _ => first,
    }
}

/// A bounded cache of classifications by query text.
///
/// Besides exact texts, the cache keys statements by their *literal shape*: the text
/// with every standalone number (an ASCII digit run between non-identifier characters,
/// at most 18 digits) replaced by a marker. `SELECT ... WHERE aid = 17` and `... = 42`
/// then share one parse: their classes, verbs and objects are necessarily the same
/// (classification never depends on the value of a number, and an identifier never
/// starts with a digit). Texts holding `"` (quoted identifiers can contain such
/// digits), `\` or `&` (escapes in `E''` / `U&''` strings decode digits into letters)
/// are only cached exactly.
#[derive(Debug)]
pub struct ClassCache {
    map: Mutex<HashMap<String, Classified>>,
    capacity: usize,
}

/// A statement text's classification and what the masking must know of it, from one
/// parse (literals play no part in any of it, so one literal shape shares it).
#[derive(Clone, Debug)]
pub struct Classified {
    /// The classification.
    pub command: Arc<Command>,
    /// Columns selected under another name ([`renamed_columns`]).
    pub renamed: Arc<[String]>,
    /// A binary `COPY ... TO` ([`copies_binary_out`]): output the masking cannot read.
    pub binary_copy_out: bool,
}

impl Classified {
    /// A command that is not SQL text (a FunctionCall): nothing for the masking to check.
    pub fn command_only(command: Arc<Command>) -> Self {
        Classified {
            command,
            renamed: Arc::from([]),
            binary_copy_out: false,
        }
    }
}

/// Start of every shape key (a NUL never occurs in a query text, so a shape key never
/// equals an exact one).
const SHAPE_MARK: char = '\0';

/// Longest digit run replaced (fits every integer type the parser reads, u64 and i64).
const MAX_SHAPE_DIGITS: usize = 18;

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || !b.is_ascii()
}

/// The literal shape of `sql` (see [`ClassCache`]), or `None` when it has no number to
/// replace or may not be shaped.
pub fn literal_shape(sql: &str) -> Option<String> {
    let bytes = sql.as_bytes();
    if !bytes.iter().any(u8::is_ascii_digit)
        || bytes.iter().any(|b| matches!(b, b'"' | b'\\' | b'&' | 0))
    {
        return None;
    }
    let mut key = String::with_capacity(sql.len() + 1);
    key.push(SHAPE_MARK);
    let mut changed = false;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let Some(&b) = bytes.get(i) else { break };
        if !b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let before = start.checked_sub(1).and_then(|j| bytes.get(j)).copied();
        let after = bytes.get(i).copied();
        if i - start <= MAX_SHAPE_DIGITS
            && !before.is_some_and(is_ident_byte)
            && !after.is_some_and(is_ident_byte)
        {
            // Runs are ASCII and bounded by ASCII bytes: char boundaries.
            key.push_str(sql.get(copied..start)?);
            key.push(SHAPE_MARK);
            copied = i;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    key.push_str(sql.get(copied..)?);
    Some(key)
}

impl ClassCache {
    /// A cache of at most `capacity` query texts (cleared when full: simple and bounded).
    pub fn new(capacity: usize) -> Self {
        ClassCache {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn get(&self, key: &str) -> Option<Classified> {
        self.map.lock().ok()?.get(key).cloned()
    }

    /// The classification of `sql`, parsing it only on a miss. Texts over 64 KiB are
    /// classified but not cached.
    pub fn classify(&self, sql: &str) -> Arc<Command> {
        self.classify_full(sql).command
    }

    /// [`classify`](Self::classify) with the columns `sql` selects under another name.
    pub fn classify_full(&self, sql: &str) -> Classified {
        if let Some(c) = self.get(sql) {
            return c;
        }
        let shape = if sql.len() <= 64 * 1024 {
            literal_shape(sql)
        } else {
            None
        };
        if let Some(key) = &shape
            && let Some(c) = self.get(key)
        {
            if c.command.text == sql {
                return c;
            }
            let command = Arc::new(Command {
                class: c.command.class,
                verb: c.command.verb.clone(),
                text: sql.to_owned(),
                objects: c.command.objects.clone(),
            });
            return Classified { command, ..c };
        }
        let (command, renamed, binary_copy_out) = analyse(sql);
        let c = Classified {
            command: Arc::new(command),
            renamed: renamed.into(),
            binary_copy_out,
        };
        if sql.len() <= 64 * 1024
            && let Ok(mut map) = self.map.lock()
        {
            if map.len() >= self.capacity {
                map.clear();
            }
            map.insert(shape.unwrap_or_else(|| sql.to_owned()), c.clone());
        }
        c
    }

    /// Number of cached texts.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for ClassCache {
    fn default() -> Self {
        Self::new(10_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ActionClass::*;

    fn c(sql: &str) -> ActionClass {
        classify(sql).class
    }

    #[test]
    fn basic_classes() {
        assert_eq!(c("select * from users"), Read);
        assert_eq!(c("SELECT 1"), Read);
        assert_eq!(c("insert into t values (1)"), Write);
        assert_eq!(c("update t set a = 1 where id = 2"), Write);
        assert_eq!(c("update t set a = 1"), Destructive);
        assert_eq!(c("delete from t where id = 1"), Write);
        assert_eq!(c("delete from t"), Destructive);
        assert_eq!(c("create table t (a int)"), Ddl);
        assert_eq!(c("alter table t add column b int"), Ddl);
        assert_eq!(c("alter table t drop column b"), Destructive);
        assert_eq!(c("drop table t"), Destructive);
        assert_eq!(c("DROP DATABASE app"), Destructive);
        assert_eq!(c("truncate t"), Destructive);
        assert_eq!(c("grant select on t to bob"), Admin);
        assert_eq!(c("create role eve login"), Admin);
        assert_eq!(c("begin"), Read);
        assert_eq!(c("commit"), Read);
        assert_eq!(c("show search_path"), Read);
    }

    #[test]
    fn bypass_attempts() {
        assert_eq!(c("select 1; drop table t"), Destructive);
        assert_eq!(c("/* x */ DROP TABLE t"), Destructive);
        assert_eq!(c("-- hi\nDrOp TaBlE t"), Destructive);
        assert_eq!(
            c("select ';drop table t'"),
            Read,
            "a literal is not a statement"
        );
        assert_eq!(
            c("with d as (delete from t where a = 1 returning *) select * from d"),
            Write
        );
        assert_eq!(
            c("with d as (delete from t returning *) select * from d"),
            Destructive
        );
        assert_eq!(c("explain analyze delete from t"), Destructive);
        assert_eq!(c("explain delete from t"), Read);
        assert_eq!(c("select pg_read_file('/etc/passwd')"), Admin);
        assert_eq!(c("select pg_terminate_backend(123)"), Admin);
        assert_eq!(c("select set_config('role', 'postgres', false)"), Admin);
        assert_eq!(c("select * from t for update"), Write);
        assert_eq!(c("select * into t2 from t"), Ddl);
        assert_eq!(c("set role postgres"), Admin);
        assert_eq!(c("set session authorization postgres"), Admin);
        assert_eq!(c("set default_transaction_read_only = off"), Admin);
        assert_eq!(c("set search_path = public"), Read);
        assert_eq!(c("prepare p as delete from t"), Destructive);
    }

    #[test]
    fn unknown_and_admin() {
        assert_eq!(c("DO $$ begin drop table t; end $$"), Unknown);
        assert_eq!(c("ALTER SYSTEM SET work_mem = '1GB'"), Unknown);
        assert_eq!(c("this is not sql"), Unknown);
        assert_eq!(c("copy t to program 'rm -rf /'"), Admin);
        assert_eq!(c("copy t from program 'curl x'"), Admin);
        assert_eq!(c("copy t from '/etc/passwd'"), Admin);
        assert_eq!(c("copy t to stdout"), Read);
        assert_eq!(c("copy t from stdin"), Write);
        assert_eq!(c("call do_things()"), Unknown);
    }

    #[test]
    fn verbs_and_objects() {
        let cmd = classify("select 1; drop table public.users");
        assert_eq!(cmd.verb, "DROP TABLE");
        assert!(cmd.objects.iter().any(|o| o == "public.users"));
        assert_eq!(classify("").class, Read);
    }

    #[test]
    fn cache_hits_and_bounds() {
        let cache = ClassCache::new(2);
        let a = cache.classify("select 1");
        let b = cache.classify("select 1");
        assert!(Arc::ptr_eq(&a, &b));
        cache.classify("select 2");
        cache.classify("select 3");
        assert!(cache.len() <= 2);
    }

    #[test]
    fn literal_shapes() {
        let s = |q: &str| literal_shape(q);
        assert_eq!(
            s("select a from t where id = 17;"),
            s("select a from t where id = 123456;")
        );
        assert!(s("select a from t where id = 17").is_some());
        assert_eq!(s("select 1.5"), s("select 22.75"));
        assert_eq!(s("select 1e5"), None, "exponent digits touch letters");
        // Digits inside identifiers, parameters and hex-like tokens stay.
        assert_eq!(s("select * from t1"), None);
        assert_eq!(s("select $1"), None);
        assert_ne!(s("select 1 from t1"), s("select 1 from t2"));
        assert_eq!(s("select 0x1f"), None);
        assert_eq!(s("select a from s1.t2 where b = x3"), None);
        // Quoted identifiers and escapes: exact texts only.
        assert_eq!(s("select 1 from \"t 1\""), None);
        assert_eq!(s("set application_name = E'\\162ole'"), None);
        assert_eq!(s("select U&'d!0061t' uescape '!'"), None);
        // Runs too long to fit an integer stay.
        assert_eq!(s("select 1234567890123456789"), None);
        assert_eq!(s("no digits"), None);
        let k = s("é1 = 2").unwrap();
        assert!(k.contains("é1"));
    }

    proptest::proptest! {
        /// A statement classified through a shape entry made by another statement of the
        /// same shape gets exactly what parsing it would give.
        #[test]
        fn shape_sharing_equals_parsing(
            t in 0usize..12,
            a in proptest::collection::vec(0u64..1_000_000_000, 3),
            b in proptest::collection::vec(0u64..1_000_000_000, 3),
        ) {
            const TEMPLATES: &[&str] = &[
                "select abalance from pgbench_accounts where aid = {};",
                "update t1 set a = {} where id = {} and b < {}",
                "delete from t where id = {} or {} = {}",
                "select * from t2 limit {} offset {}; drop table x{}",
                "select {}.{} , 'str {}' from s1.t",
                "insert into t values ({}, '{}', {}.5)",
                "select pg_terminate_backend({})",
                "set statement_timeout = {}",
                "select a::varchar({}) , b::numeric({},{}) from t",
                "copy (select {} from t) to stdout",
                "explain analyze delete from t where a > {}",
                "select * from t where a in ({}, {}, {}) for update",
            ];
            let fill = |v: &[u64]| {
                let mut out = String::new();
                let mut it = v.iter();
                for (i, part) in TEMPLATES[t].split("{}").enumerate() {
                    if i > 0 {
                        out.push_str(&it.next().copied().unwrap_or(0).to_string());
                    }
                    out.push_str(part);
                }
                out
            };
            let (first, second) = (fill(&a), fill(&b));
            let cache = ClassCache::new(100);
            cache.classify(&first);
            let shared = cache.classify(&second);
            let fresh = classify(&second);
            proptest::prop_assert_eq!(&*shared, &fresh);
        }
    }

    #[test]
    fn shape_hits_keep_text_and_class() {
        let cache = ClassCache::new(100);
        let a = cache.classify("select abalance from pgbench_accounts where aid = 17;");
        let b = cache.classify("select abalance from pgbench_accounts where aid = 99;");
        assert_eq!(cache.len(), 1, "one entry for both texts");
        assert_eq!(
            b.text,
            "select abalance from pgbench_accounts where aid = 99;"
        );
        assert_eq!(a.class, b.class);
        assert_eq!(a.objects, b.objects);
        assert_eq!(a.verb, b.verb);
        // Different shapes do not share.
        let d = cache.classify("update t set a = 1");
        let w = cache.classify("update t set a = 1 where id = 2");
        assert_eq!(d.class, Destructive);
        assert_eq!(w.class, Write);
        let w2 = cache.classify("update t set a = 5 where id = 9");
        assert_eq!(w2.class, Write);
        assert_eq!(w2.text, "update t set a = 5 where id = 9");
        // A repeated text gets the very same entry.
        let b2 = cache.classify("select abalance from pgbench_accounts where aid = 17;");
        assert!(Arc::ptr_eq(&a, &b2));
    }
}

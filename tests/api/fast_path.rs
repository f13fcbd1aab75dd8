//! A page's rows answer byte for byte alike whether they resolve inline
//! (`graphql/inline.rs`) or through async-graphql's general resolution:
//! random selections, drawn from the schema's own fields, each sent plainly
//! and inside a fragment (which always goes the general way).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::helpers::*;

on_both_databases!(plan_pages_answer_alike_inline_and_the_general_way);

/// Bytes of specs and work artifacts one response may carry: the page's
/// specs fit, twice over they do not, nor do its work artifacts, so pages
/// showing aliases of `spec` or any `workArtifacts` run out of budget
/// part-way down (the fixture checks this holds).
const DOCUMENT_BUDGET: usize = 600;

/// Generated cases per database, unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 200;

/// The cases' seed unless `FAST_PATH_SEED` names another: the same run
/// every time, and any other one on request.
const SEED: u64 = 0x5eed_fa57_0a7e;

/// The counter a page whose rows resolved inline adds one to.
const INLINE_PAGES: &str = "plangraph_inline_pages_total";

/// Selections that once answered differently, or that must keep taking
/// the path named: (rows, fragments, the inline path expected).
const FIXED: &[(&str, &str, Option<bool>)] = &[
    (
        "__typename id title heading: title status priority claimedAt leaseExpiresAt
         claimedBy { id email displayName } submittedBy { email } createdBy { isAdmin }
         feature { __typename title currentVersion } project { name reviewPolicy }",
        "",
        Some(true),
    ),
    // The budget runs out on a field resolved inline: same errors, same paths.
    ("title workArtifacts notes: workArtifacts", "", Some(true)),
    ("spec workArtifacts title", "", Some(false)),
    // async-graphql applies `@include` and `@skip` before execution, and
    // takes them off: what they leave resolves inline.
    (
        "title @include(if: $yes) status @skip(if: false)",
        "",
        Some(true),
    ),
    // Skipped away before execution: an object with nothing left to show.
    ("id feature { id @skip(if: true) }", "", None),
    ("title @skip(if: $yes)", "", None),
    (
        "claimedBy { ...Who } claimedBy { email }",
        "fragment Who on User { displayName }",
        Some(false),
    ),
    // Merged as they finish: the selection whose only field is refused
    // answers null, and wins only where it finished first.
    (
        "project { webhooks { url } } project { features(first: 3) { totalCount } }",
        "",
        Some(false),
    ),
];

/// A field as introspection describes it, reduced to what selecting it takes.
#[derive(Debug)]
struct FieldShape {
    name: String,
    /// The named type under its lists and non-nulls, when that type has
    /// fields to select (an object, an interface, a union).
    object: Option<String>,
    /// Required `Int` arguments: given `1`, a version and a revision that exist.
    required: Vec<String>,
    /// Its first optional `Int` argument (a page size, a history's length,
    /// a version to compare from), given a value when the field is aliased.
    optional: Option<String>,
}

/// The types under `Plan`, with the fields a selection may pick.
struct Types(BTreeMap<String, Vec<FieldShape>>);

const TYPE: &str = "query($name: String!) { __type(name: $name) { fields {
    name args { name type { kind name ofType { kind name } } }
    type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }";

impl Types {
    /// `Plan` and every type with fields reachable from it, read from the
    /// schema itself, so that a field added later is selected too.
    async fn introspect(client: &Client) -> Types {
        let mut types = BTreeMap::new();
        let mut queue = VecDeque::from(["Plan".to_owned()]);
        while let Some(name) = queue.pop_front() {
            if types.contains_key(&name) {
                continue;
            }
            let data = client.ok(TYPE, json!({ "name": name })).await;
            let fields = data["__type"]["fields"].as_array().cloned();
            let shapes: Vec<FieldShape> = fields
                .unwrap_or_default()
                .iter()
                .filter_map(FieldShape::of)
                .collect();
            queue.extend(shapes.iter().filter_map(|field| field.object.clone()));
            types.insert(name, shapes);
        }
        Types(types)
    }

    fn fields(&self, type_name: &str) -> &[FieldShape] {
        self.0.get(type_name).map_or(&[], Vec::as_slice)
    }
}

impl FieldShape {
    /// None for a field with a required argument other than an `Int`: no
    /// literal picked blindly would be valid for it.
    fn of(field: &Value) -> Option<FieldShape> {
        let mut required = Vec::new();
        let mut optional = None;
        for argument in field["args"].as_array()? {
            let name = argument["name"].as_str()?.to_owned();
            let ty = &argument["type"];
            if ty["kind"] == "NON_NULL" {
                if ty["ofType"]["name"] != "Int" {
                    return None;
                }
                required.push(name);
            } else if ty["name"] == "Int" && optional.is_none() {
                optional = Some(name);
            }
        }
        // Lists deeper than `TYPE` asks about end in null: such a field is left out.
        let mut ty = &field["type"];
        while ty["name"].is_null() && !ty.is_null() {
            ty = &ty["ofType"];
        }
        ty["name"].as_str()?;
        let object = matches!(ty["kind"].as_str(), Some("OBJECT" | "INTERFACE" | "UNION"))
            .then(|| ty["name"].as_str().map(str::to_owned))
            .flatten();
        Some(FieldShape {
            name: field["name"].as_str()?.to_owned(),
            object,
            required,
            optional,
        })
    }
}

/// One selection of a generated selection set. Fields are picked by index
/// among their type's fields when the set is written, so that one tree
/// shrinks the same whatever the schema holds.
#[derive(Clone, Debug)]
enum Item {
    Field {
        pick: Index,
        alias: Option<u8>,
        directive: Directive,
        /// Selected a second time under the same key, its selection
        /// reversed: GraphQL merges the two.
        twice: bool,
        below: Vec<Item>,
    },
    Typename {
        alias: Option<u8>,
        directive: Directive,
    },
    Fragment {
        named: bool,
        typed: bool,
        directive: Directive,
        below: Vec<Item>,
    },
    /// One field under many aliases: wider sets than the inline path takes.
    Wide { pick: Index, count: u8 },
}

#[derive(Clone, Copy, Debug)]
enum Directive {
    None,
    Include(Condition),
    Skip(Condition),
}

#[derive(Clone, Copy, Debug)]
enum Condition {
    Literal(bool),
    Variable(bool),
}

/// `@include` or `@skip`, if anything. async-graphql's validation does not
/// visit `__typename` (7.2.1), and so calls a variable used only in a
/// directive there unused: `__typename` gets literal conditions only.
fn directive(plain: bool, variables: bool) -> BoxedStrategy<Directive> {
    if plain {
        return Just(Directive::None).boxed();
    }
    let condition = prop_oneof![
        any::<bool>().prop_map(Condition::Literal),
        any::<bool>().prop_map(move |value| if variables {
            Condition::Variable(value)
        } else {
            Condition::Literal(value)
        }),
    ];
    prop_oneof![
        4 => Just(Directive::None),
        1 => condition.clone().prop_map(Directive::Include),
        1 => condition.prop_map(Directive::Skip),
    ]
    .boxed()
}

fn alias() -> impl Strategy<Value = Option<u8>> + Clone {
    prop_oneof![3 => Just(None), 1 => (0..4u8).prop_map(Some)]
}

/// Selection sets of plans. Plain ones hold fields and `__typename` only,
/// each under a key of its own unless aliases happen to meet: the shape
/// the inline path takes when every field is immediate. The others add
/// fragments, directives and repeated keys, which it leaves to the general
/// path.
fn selection(plain: bool) -> impl Strategy<Value = Vec<Item>> {
    let typename = (alias(), directive(plain, false))
        .prop_map(|(alias, directive)| Item::Typename { alias, directive });
    let leaf = prop_oneof![
        6 => (any::<Index>(), alias(), directive(plain, true)).prop_map(|(pick, alias, directive)| {
            Item::Field { pick, alias, directive, twice: false, below: Vec::new() }
        }),
        1 => typename.clone(),
    ];
    let item = leaf.prop_recursive(4, 40, 4, move |inner| {
        let below = prop::collection::vec(inner, 0..4);
        let twice = if plain {
            Just(false).boxed()
        } else {
            prop::bool::weighted(0.2).boxed()
        };
        let field = (
            any::<Index>(),
            alias(),
            directive(plain, true),
            twice,
            below.clone(),
        )
            .prop_map(|(pick, alias, directive, twice, below)| Item::Field {
                pick,
                alias,
                directive,
                twice,
                below,
            });
        let wide = (any::<Index>(), 20..=40u8).prop_map(|(pick, count)| Item::Wide { pick, count });
        let fragment = (any::<bool>(), any::<bool>(), directive(plain, true), below).prop_map(
            |(named, typed, directive, below)| Item::Fragment {
                named,
                typed,
                directive,
                below,
            },
        );
        if plain {
            prop_oneof![8 => field, 1 => typename.clone(), 1 => wide].boxed()
        } else {
            prop_oneof![8 => field, 1 => typename.clone(), 3 => fragment, 1 => wide].boxed()
        }
    });
    prop::collection::vec(item, 1..6)
}

/// A selection written out: the rows' selection set, the fragments it
/// spreads and the variables it uses.
struct Written {
    rows: String,
    fragments: Vec<String>,
    variables: BTreeSet<&'static str>,
}

struct Writer<'a> {
    types: &'a Types,
    /// Every object's selections inside a fragment on its type, so that
    /// the objects under the rows (a plan's feature, its claimer) go the
    /// general way too.
    general: bool,
    fragments: Vec<String>,
    variables: BTreeSet<&'static str>,
}

impl Writer<'_> {
    fn write(types: &Types, items: &[Item], general: bool) -> Written {
        let mut writer = Writer {
            types,
            general,
            fragments: Vec::new(),
            variables: BTreeSet::new(),
        };
        let rows = writer.set("Plan", items);
        Written {
            rows,
            fragments: writer.fragments,
            variables: writer.variables,
        }
    }

    /// A selection set never left empty: `__typename` when nothing else is.
    fn set(&mut self, type_name: &str, items: &[Item]) -> String {
        let written: Vec<String> = items
            .iter()
            .filter_map(|item| self.item(type_name, item))
            .collect();
        if written.is_empty() {
            "__typename".to_owned()
        } else {
            written.join(" ")
        }
    }

    fn item(&mut self, type_name: &str, item: &Item) -> Option<String> {
        let types = self.types;
        match item {
            Item::Field {
                pick,
                alias,
                directive,
                twice,
                below,
            } => {
                let fields = types.fields(type_name);
                if fields.is_empty() {
                    return None;
                }
                let field = pick.get(fields);
                let head = self.head(field, *alias);
                let directive = self.directive(*directive);
                let mut text = format!("{head}{directive}{}", self.below(type_name, field, below));
                if *twice {
                    let reversed: Vec<Item> = below.iter().rev().cloned().collect();
                    text = format!(
                        "{text} {head}{directive}{}",
                        self.below(type_name, field, &reversed)
                    );
                }
                Some(text)
            }
            Item::Typename { alias, directive } => {
                let key = alias.map_or(String::new(), |alias| format!("typename_{alias}: "));
                Some(format!("{key}__typename{}", self.directive(*directive)))
            }
            Item::Fragment {
                named,
                typed,
                directive,
                below,
            } => {
                let body = self.set(type_name, below);
                let directive = self.directive(*directive);
                if *named {
                    let name = format!("F{}", self.fragments.len());
                    self.fragments
                        .push(format!("fragment {name} on {type_name} {{ {body} }}"));
                    Some(format!("...{name}{directive}"))
                } else if *typed {
                    Some(format!("... on {type_name}{directive} {{ {body} }}"))
                } else {
                    Some(format!("...{directive} {{ {body} }}"))
                }
            }
            Item::Wide { pick, count } => {
                let fields = types.fields(type_name);
                if fields.is_empty() {
                    return None;
                }
                let field = pick.get(fields);
                let below = field.object.as_ref().map_or(String::new(), |object| {
                    self.object_set(object, "__typename")
                });
                let many: Vec<String> = (0..*count)
                    .map(|alias| format!("{}{below}", self.head(field, Some(alias))))
                    .collect();
                Some(many.join(" "))
            }
        }
    }

    /// The field under its key, with its arguments. The arguments follow
    /// from the key, so that a key met twice always names the same field
    /// with the same arguments, which GraphQL requires to merge them.
    fn head(&mut self, field: &FieldShape, alias: Option<u8>) -> String {
        let mut arguments: Vec<String> = field
            .required
            .iter()
            .map(|name| format!("{name}: 1"))
            .collect();
        if let (Some(name), Some(alias)) = (&field.optional, alias) {
            let value = alias % 4;
            if value == 2 {
                self.variables.insert("two");
                arguments.push(format!("{name}: $two"));
            } else {
                arguments.push(format!("{name}: {value}"));
            }
        }
        let key = alias.map_or(String::new(), |alias| format!("{}_{alias}: ", field.name));
        if arguments.is_empty() {
            format!("{key}{}", field.name)
        } else {
            format!("{key}{}({})", field.name, arguments.join(", "))
        }
    }

    /// What `field` of `parent` selects. A page nested under the rows (a
    /// feature's plans) is written plainly both ways: it then takes the
    /// same path in both documents, and only the outer page counts apart.
    fn below(&mut self, parent: &str, field: &FieldShape, items: &[Item]) -> String {
        let Some(object) = &field.object else {
            return String::new();
        };
        let nested_page = field.name == "nodes" && parent.ends_with("Connection");
        let general = self.general;
        self.general = general && !nested_page;
        let set = self.set(object, items);
        let written = self.object_set(object, &set);
        self.general = general;
        written
    }

    /// An object's selection set, in a fragment when written for the
    /// general way. Written plainly, spaces take the fragment's place:
    /// every field then stands at the same column in both documents, and
    /// errors name the same locations.
    fn object_set(&self, object: &str, set: &str) -> String {
        let open = format!("... on {object} {{ ");
        if self.general {
            format!(" {{ {open}{set} }} }}")
        } else {
            format!(" {{ {}{set}   }}", " ".repeat(open.len()))
        }
    }

    fn directive(&mut self, directive: Directive) -> String {
        let (name, condition) = match directive {
            Directive::None => return String::new(),
            Directive::Include(condition) => ("include", condition),
            Directive::Skip(condition) => ("skip", condition),
        };
        let value = match condition {
            Condition::Literal(value) => value.to_string(),
            Condition::Variable(value) => {
                let variable = if value { "yes" } else { "no" };
                self.variables.insert(variable);
                format!("${variable}")
            }
        };
        format!(" @{name}(if: {value})")
    }
}

/// The same page twice: its rows' selection written out plainly, and
/// inside fragments, which the inline path never takes.
struct Documents {
    plain: String,
    general: String,
    variables: Value,
}

impl Documents {
    /// `plain` and `general` are one selection written both ways, the
    /// same length at every field.
    fn of(plain: &Written, general: &Written, feature: &str) -> Documents {
        let mut declared = vec!["$f: ID!".to_owned()];
        let mut variables = json!({ "f": feature });
        for variable in &plain.variables {
            let (ty, value) = match *variable {
                "yes" => ("Boolean!", json!(true)),
                "no" => ("Boolean!", json!(false)),
                _ => ("Int", json!(2)),
            };
            declared.push(format!("${variable}: {ty}"));
            variables[*variable] = value;
        }
        let declared = declared.join(", ");
        let page = format!("query Page({declared}) {{ plans(featureId: $f, first: 10) {{ nodes {{");
        // The rows' selection starts on the second line of both, and the
        // fragments on the fourth: errors name the same locations.
        Documents {
            plain: format!(
                "{page}\n{}\n}} }} }}\n{}",
                plain.rows,
                plain.fragments.join("\n")
            ),
            general: format!(
                "{page} ...Row }} }} }} fragment Row on Plan {{\n{}\n}}\n{}",
                general.rows,
                general.fragments.join("\n")
            ),
            variables,
        }
    }

    /// A selection as written by hand: only the rows go the general way.
    fn fixed(rows: &str, fragments: &str, feature: &str) -> Documents {
        let variables = ["yes", "no", "two"]
            .into_iter()
            .filter(|name| {
                let variable = format!("${name}");
                rows.contains(&variable) || fragments.contains(&variable)
            })
            .collect();
        let written = Written {
            rows: rows.to_owned(),
            fragments: vec![fragments.to_owned()],
            variables,
        };
        Documents::of(&written, &written, feature)
    }
}

/// How the cases went.
#[derive(Default)]
struct Tally {
    cases: u32,
    /// The plain page's rows resolved inline.
    inline: u32,
    /// It answered with errors.
    errors: u32,
    inline_errors: u32,
    /// Refused before it ran (a document the generator got wrong).
    refused: u32,
    /// Both ways general, alike but for the order waiting fields finished
    /// in (`alike_but_for_timing`).
    timing: u32,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        self.cases += 1;
        self.inline += u32::from(outcome.inline);
        self.errors += u32::from(outcome.errors);
        self.inline_errors += u32::from(outcome.inline && outcome.errors);
        self.refused += u32::from(outcome.refused);
        self.timing += u32::from(outcome.timing);
    }
}

/// How one page went.
struct Outcome {
    inline: bool,
    errors: bool,
    refused: bool,
    timing: bool,
}

/// A server seeded once, its schema's types, and the viewer who reads it.
struct Fixture {
    server: Server,
    team: Team,
    types: Types,
    /// The inline pages counted after the last comparison: one reading
    /// of `/metrics` fewer per case.
    last_count: Cell<Option<f64>>,
}

impl Fixture {
    async fn start(backend: Backend) -> Fixture {
        let budget = DOCUMENT_BUDGET.to_string();
        let server = Server::start_with(
            backend,
            &[
                "--max-response-document-bytes",
                &budget,
                // Nested lists multiply their price; this test wants them run.
                "--max-query-complexity",
                "1000000000",
                // Only to stall one plan whose lease ran out.
                "--sweep-every",
                "200ms",
            ],
        )
        .await;
        let team = Team::new(&server).await;
        seed(&server, &team).await;
        let types = Types::introspect(&team.viewer).await;
        Fixture {
            server,
            team,
            types,
            last_count: Cell::new(None),
        }
    }

    async fn body(&self, query: &str, variables: &Value) -> String {
        reqwest::Client::new()
            .post(format!("{}/graphql", self.server.base_url))
            .bearer_auth(self.team.viewer.key())
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("the server answers")
            .text()
            .await
            .expect("a body")
    }

    async fn inline_pages(&self) -> f64 {
        self.server.metrics().await.count(INLINE_PAGES)
    }

    /// Sends both documents and compares the bodies as sent. Pages nested
    /// under the rows take the same path both ways (`Writer::below`), so
    /// the plain page itself resolved inline when it counted one more.
    async fn compare(&self, documents: &Documents) -> Result<Outcome, String> {
        let before = match self.last_count.take() {
            Some(count) => count,
            None => self.inline_pages().await,
        };
        let plain = self.body(&documents.plain, &documents.variables).await;
        let between = self.inline_pages().await;
        let general = self.body(&documents.general, &documents.variables).await;
        let after = self.inline_pages().await;
        self.last_count.set(Some(after));
        let inline = (between - before) - (after - between) > 0.5;
        let mismatch = || {
            format!(
                "the page answers differently plainly and in fragments\n\
                 variables: {}\n--- plain:\n{}\n--- in fragments:\n{}\n\
                 --- plain answered:\n{plain}\n--- in fragments answered:\n{general}",
                documents.variables, documents.plain, documents.general
            )
        };
        let answer: Value = serde_json::from_str(&plain).map_err(|_| mismatch())?;
        let mut outcome = Outcome {
            inline,
            errors: answer.get("errors").is_some(),
            refused: answer["data"].is_null(),
            timing: false,
        };
        if plain == general {
            return Ok(outcome);
        }
        // Inline nothing waits, and then neither do the same fields the
        // general way: their answers must be the same bytes.
        if inline || !alike_but_for_timing(&plain, &general) {
            return Err(mismatch());
        }
        outcome.timing = true;
        Ok(outcome)
    }
}

/// Fields that wait (on a loader, the spec store, a diff) finish in no set
/// order, and async-graphql's general way shows that in three ways: it
/// lists their errors as they finish; those that charge the document
/// budget after waiting (a feature's spec, a diff) take it in that order;
/// and a key selected twice is resolved once per selection and merged as
/// they finish, where one answering null (every field of it refused) wins
/// only if it came first. Two answers are alike despite that when their
/// errors are the same in some order (those of the budget aside, which
/// both must have or neither), and their `data` the same bytes, or the
/// same once every field an error names is left out of both (its parent
/// made null in both, where either has it null).
fn alike_but_for_timing(one: &str, other: &str) -> bool {
    let (Some(mut one), Some(mut other)) = (Answer::of(one), Answer::of(other)) else {
        return false;
    };
    if one.other_errors() != other.other_errors() || one.out_of_budget() != other.out_of_budget() {
        return false;
    }
    if one.data_text == other.data_text {
        return true;
    }
    let named: Vec<Value> = one
        .errors
        .iter()
        .chain(&other.errors)
        .map(|error| error["path"].clone())
        .collect();
    for path in &named {
        let Some((Value::String(key), parents)) =
            path.as_array().and_then(|path| path.split_last())
        else {
            continue;
        };
        let null_in_either = [&mut one.data, &mut other.data]
            .into_iter()
            .any(|data| at(data, parents).is_none_or(|parent| parent.is_null()));
        for data in [&mut one.data, &mut other.data] {
            let Some(parent) = at(data, parents) else {
                continue;
            };
            if null_in_either {
                *parent = Value::Null;
            } else if let Value::Object(fields) = parent
                && fields.remove(key).is_some()
                && fields.is_empty()
            {
                // An object left with no fields answers null, as async-graphql's does.
                *parent = Value::Null;
            }
        }
    }
    one.data == other.data
}

/// The value at `path` in `data`.
fn at<'a>(data: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    path.iter().try_fold(data, |value, segment| match segment {
        Value::String(key) => value.get_mut(key.as_str()),
        Value::Number(index) => value.get_mut(usize::try_from(index.as_u64()?).ok()?),
        _ => None,
    })
}

fn is_budget_error(error: &Value) -> bool {
    error["message"]
        .as_str()
        .is_some_and(|message| message.contains("--max-response-document-bytes"))
}

/// An answer's `data`, as written and parsed, and its errors.
struct Answer {
    data_text: String,
    data: Value,
    errors: Vec<Value>,
}

impl Answer {
    fn of(body: &str) -> Option<Answer> {
        let mut whole: Value = serde_json::from_str(body).ok()?;
        // The writer puts `data` first and `errors` last; nothing in `data`
        // writes that key unescaped but a field aliased `errors`, which the
        // selections never have.
        let data_text = match body.rfind(",\"errors\":[") {
            Some(end) => body[..end].to_owned(),
            None => body.to_owned(),
        };
        let errors = whole["errors"].as_array().cloned().unwrap_or_default();
        Some(Answer {
            data_text,
            data: whole["data"].take(),
            errors,
        })
    }

    fn out_of_budget(&self) -> bool {
        self.errors.iter().any(is_budget_error)
    }

    /// The errors but the budget's, in a set order.
    fn other_errors(&self) -> Vec<String> {
        let mut errors: Vec<String> = self
            .errors
            .iter()
            .filter(|error| !is_budget_error(error))
            .map(Value::to_string)
            .collect();
        errors.sort();
        errors
    }
}

const CREATE: &str = "mutation($featureId: ID!, $title: String!, $description: String, $spec: String!, $status: PlanStatus, $priority: Int) {
    createPlan(featureId: $featureId, title: $title, description: $description, specContent: $spec, status: $status, priority: $priority) { id } }";
const CLAIM_FOR: &str = "mutation($planId: ID!, $lease: Int) { claimPlan(planId: $planId, leaseSeconds: $lease) { id } }";
const DEPEND: &str = "mutation($plan: ID!, $blocker: ID!) {
    addPlanDependency(planId: $plan, blockedByPlanId: $blocker) { id } }";
const PRIORITY: &str = "mutation($planId: ID!, $priority: Int!) {
    setPlanPriority(planId: $planId, priority: $priority) { id } }";
const NEW_VERSION: &str = "mutation($id: ID!, $spec: String!) {
    updateFeature(featureId: $id, specContent: $spec, newVersion: true) { currentVersion } }";
const SIZES: &str = "query($f: ID!) { plans(featureId: $f, first: 100) {
    totalCount nodes { specSize } } }";

/// Work artifacts long enough that a page's overrun `DOCUMENT_BUDGET`,
/// with text JSON must escape.
fn artifacts(number: u32) -> String {
    format!(
        "PR #{number}: https://example.com/pull/{number}\n\n* \"quoted\" notes, a tab\there and a backslash \\\n* Ünïcode ✓ — {}",
        "done ".repeat(50)
    )
}

/// Ten plans of the team's feature, one page of them: every status (the
/// stalled one through the sweeper), two claimers (one with a display
/// name), submitters, work artifacts, descriptions and nulls, priorities,
/// dependencies met and unmet, plans drifted behind the feature and plans
/// written after its last version.
async fn seed(server: &Server, team: &Team) {
    let agent = server
        .admin()
        .ok(
            "mutation { createUser(email: \"agent@example.com\", displayName: \"Agent \\\"Smith\\\"\") { secret } }",
            json!({}),
        )
        .await;
    let agent = server.client(agent["createUser"]["secret"].as_str().expect("secret"));
    team.owner
        .ok(
            ADD_MEMBER,
            json!({ "projectId": team.project, "email": "agent@example.com", "role": "MEMBER" }),
        )
        .await;
    let create = async |title: &str, description: Option<&str>, status: &str, priority: i32| {
        let vars = json!({
            "featureId": team.feature, "title": title, "description": description,
            "spec": format!("# {title}\n\n{}", "Steps to take. ".repeat(3)), "status": status, "priority": priority,
        });
        let data = team.owner.ok(CREATE, vars).await;
        data["createPlan"]["id"]
            .as_str()
            .expect("plan id")
            .to_owned()
    };
    let draft = create(
        "Ünïcode \"quoted\" \\ title ✓",
        Some("Two lines:\n\"how\" and <why>"),
        "DRAFT",
        0,
    )
    .await;
    let ready = create("ready", None, "READY", 4).await;
    let claimed = team.plan_in("claimed", "CLAIMED").await;
    let in_progress = team.plan_in("in progress", "IN_PROGRESS").await;
    team.owner
        .ok(PRIORITY, json!({ "planId": in_progress, "priority": 1 }))
        .await;
    let stalled = create("stalled", None, "READY", 2).await;
    agent
        .ok(CLAIM_FOR, json!({ "planId": stalled, "lease": 1 }))
        .await;
    let review = create("review", Some(""), "READY", 3).await;
    agent.ok(CLAIM_FOR, json!({ "planId": review })).await;
    agent
        .ok(
            SUBMIT,
            json!({ "planId": review, "artifacts": artifacts(1), "status": "REVIEW" }),
        )
        .await;
    let completed = create("completed", None, "READY", 2).await;
    team.worker
        .ok(CLAIM_FOR, json!({ "planId": completed }))
        .await;
    team.worker
        .ok(
            SUBMIT,
            json!({ "planId": completed, "artifacts": artifacts(2), "status": "COMPLETED" }),
        )
        .await;
    team.plan_in("failed", "FAILED").await;
    let vars = json!({ "id": team.feature, "spec": "# Auth\nUsers sign in.\nAnd out." });
    team.owner.ok(NEW_VERSION, vars).await;
    let after_drift = create("written after the new version", None, "READY", 1).await;
    let agents_own = create("agent's own", None, "READY", 2).await;
    agent.ok(CLAIM_FOR, json!({ "planId": agents_own })).await;
    for (plan, blocker) in [
        (&ready, &claimed),
        (&ready, &in_progress),
        (&draft, &ready),
        (&after_drift, &completed),
    ] {
        team.owner
            .ok(DEPEND, json!({ "plan": plan, "blocker": blocker }))
            .await;
    }
    eventually(Duration::from_secs(30), async || {
        let data = team
            .viewer
            .ok(
                "query($id: ID!) { plan(id: $id) { status } }",
                json!({ "id": stalled }),
            )
            .await;
        (data["plan"]["status"] == "STALLED").then_some(())
    })
    .await;

    let data = team.viewer.ok(SIZES, json!({ "f": team.feature })).await;
    assert_eq!(
        data["plans"]["totalCount"], 10,
        "one page of ten plans: {data}"
    );
    let nodes = data["plans"]["nodes"].as_array().expect("nodes");
    let specs: i64 = nodes
        .iter()
        .filter_map(|node| node["specSize"].as_i64())
        .sum();
    // The page's work artifacts, as submitted above (and by `plan_in`).
    let work = artifacts(1).len() + artifacts(2).len() + "PR #1".len();
    let budget = i64::try_from(DOCUMENT_BUDGET).expect("small");
    assert!(
        specs <= budget && 2 * specs > budget && work > DOCUMENT_BUDGET,
        "one page's specs ({specs} bytes) fit the budget, two do not, nor its work artifacts ({work})"
    );
}

/// Plain selections sent to `/graphql` as they are, and again inside
/// fragments, answer the same bytes: errors, their paths and locations and
/// the order of fields included. The selections are drawn from the
/// schema's own fields (introspected, so a field added later is drawn too)
/// and shrink to a minimal one when they do not. Plain ones must take the
/// inline path in a good share of the cases, or the comparison proves
/// little.
async fn plan_pages_answer_alike_inline_and_the_general_way(backend: Backend) {
    let fixture = Fixture::start(backend).await;
    let feature = fixture.team.feature.clone();

    for (rows, fragments, inline) in FIXED {
        let documents = Documents::fixed(rows, fragments, &feature);
        let outcome = fixture
            .compare(&documents)
            .await
            .unwrap_or_else(|mismatch| panic!("{mismatch}"));
        if let Some(inline) = inline {
            assert_eq!(outcome.inline, *inline, "the path of `{rows}`");
        }
        if rows.contains("notes: workArtifacts") {
            assert!(outcome.errors, "`{rows}` runs out of budget");
        }
    }

    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(CASES);
    let seed = std::env::var("FAST_PATH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(SEED);
    let mut seed_bytes = [0; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = prop_oneof![2 => selection(true), 1 => selection(false)];
    let tally = RefCell::new(Tally::default());
    let started = Instant::now();
    // proptest runs and shrinks cases synchronously; each one awaits the
    // server on this runtime meanwhile.
    let runtime = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |items| {
            let documents = Documents::of(
                &Writer::write(&fixture.types, &items, false),
                &Writer::write(&fixture.types, &items, true),
                &feature,
            );
            let outcome = runtime
                .block_on(fixture.compare(&documents))
                .map_err(TestCaseError::fail)?;
            tally.borrow_mut().add(&outcome);
            Ok(())
        })
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, _)) => {
            panic!("{backend:?}, seed {seed}, the smallest failing selection:\n{reason}")
        }
        Err(TestError::Abort(reason)) => panic!("{backend:?}, seed {seed}: {reason}"),
    }
    let tally = tally.into_inner();
    eprintln!(
        "{backend:?}: {} cases in {:.1?}: {} resolved inline, {} with errors ({} of them inline), {} refused, {} alike but for the general way's timing",
        tally.cases,
        started.elapsed(),
        tally.inline,
        tally.errors,
        tally.inline_errors,
        tally.refused,
        tally.timing
    );
    assert!(
        tally.inline * 5 >= tally.cases,
        "only {} of {} pages resolved inline: the comparison says little",
        tally.inline,
        tally.cases
    );
    assert!(
        0 < tally.errors && tally.errors < tally.cases,
        "{} of {} pages answered with errors",
        tally.errors,
        tally.cases
    );
    assert!(
        tally.refused * 20 <= tally.cases,
        "{} of {} documents were refused before they ran: the selections compare little",
        tally.refused,
        tally.cases
    );
}

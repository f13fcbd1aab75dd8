//! The JSON schemas the tools advertise, in the form every MCP client can
//! use: results described with both their outcomes (the tool's own shape,
//! or [`ToolError`] when `isError` is true), since clients validate
//! structured content against the output schema whether or not the call
//! failed; and only keywords every validator reads the same way.

use std::sync::Arc;

use rmcp::model::JsonObject;
use rmcp::schemars::generate::SchemaSettings;
use rmcp::schemars::transform::{Transform, transform_subschemas};
use rmcp::schemars::{self, JsonSchema, Schema};
use serde_json::{Map, Value};

use super::views::Status;

/// The `format` values JSON Schema 2020-12 defines (its validation
/// vocabulary, section 7.3). schemars adds its own (`int32`, `uint64`,
/// `double` …), which validators do not know: Ajv, the TypeScript SDK's,
/// warns about each on every schema it compiles.
const STANDARD_FORMATS: [&str; 19] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Keywords that describe a schema rather than constrain a value; when a
/// type array is split, they stay on the property itself, where clients
/// and models read them.
const ANNOTATIONS: [&str; 8] = [
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
];

/// Whether `format` is one JSON Schema defines, which every client's
/// validator knows.
pub(super) fn is_standard_format(format: &str) -> bool {
    STANDARD_FORMATS.contains(&format)
}

/// Rewrites every subschema into keywords all clients read alike:
/// non-standard formats are dropped (an unsigned one leaves `minimum: 0`
/// behind, which says the same portably), and a type array
/// (`"type": ["string", "null"]`, which the MCP Inspector flags and
/// tool-calling APIs with one type per schema cannot express) becomes an
/// `anyOf` with one branch per type.
#[derive(Clone)]
struct Portable;

impl Transform for Portable {
    fn transform(&mut self, schema: &mut Schema) {
        if let Some(object) = schema.as_object_mut() {
            drop_custom_format(object);
            split_type_array(object);
        }
        transform_subschemas(self, schema);
    }
}

fn drop_custom_format(object: &mut Map<String, Value>) {
    let Some(format) = object.get("format").and_then(Value::as_str) else {
        return;
    };
    if is_standard_format(format) {
        return;
    }
    let unsigned = format.starts_with("uint");
    object.remove("format");
    if unsigned {
        object.entry("minimum").or_insert(Value::from(0));
    }
}

/// `{"type": ["string", "null"], "description": d}` becomes
/// `{"description": d, "anyOf": [{"type": "string"}, {"type": "null"}]}`:
/// the constraints go to the branches of their type, the annotations stay.
fn split_type_array(object: &mut Map<String, Value>) {
    let Some(Value::Array(types)) = object.get("type") else {
        return;
    };
    let types: Vec<String> = types
        .iter()
        .filter_map(|name| name.as_str().map(str::to_owned))
        .collect();
    object.remove("type");
    let mut constraints = Map::new();
    for key in object.keys().cloned().collect::<Vec<_>>() {
        if !ANNOTATIONS.contains(&key.as_str())
            && let Some(value) = object.remove(&key)
        {
            constraints.insert(key, value);
        }
    }
    if let [only] = types.as_slice() {
        object.extend(constraints);
        object.insert("type".into(), only.as_str().into());
        return;
    }
    let branches: Vec<Value> = types
        .iter()
        .map(|name| {
            let mut branch = Map::new();
            branch.insert("type".into(), name.as_str().into());
            if name != "null" {
                for (key, value) in &constraints {
                    branch.insert(key.clone(), of_type(key, value, name));
                }
            }
            Value::Object(branch)
        })
        .collect();
    object.insert("anyOf".into(), branches.into());
}

/// An `enum` keeps, in the branch of one type, only the values of that
/// type (`null` is the null branch's), so each branch reads on its own.
fn of_type(key: &str, value: &Value, type_name: &str) -> Value {
    match (key, value) {
        ("enum", Value::Array(values)) => values
            .iter()
            .filter(|value| is_of_type(value, type_name))
            .cloned()
            .collect(),
        _ => value.clone(),
    }
}

fn is_of_type(value: &Value, type_name: &str) -> bool {
    match type_name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

/// What tool schemas are generated with: JSON Schema 2020-12, the dialect
/// MCP names, made [`Portable`].
fn settings() -> SchemaSettings {
    SchemaSettings::draft2020_12().with_transform(Portable)
}

fn generate<T: JsonSchema>(settings: SchemaSettings) -> JsonObject {
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut object = match schema.to_value() {
        Value::Object(object) => object,
        // `true` and `false` are schemas too; no tool type produces them.
        other => Map::from_iter([("allOf".to_owned(), Value::Array(vec![other]))]),
    };
    // The wrapper type's name and doc comment, noise to a model.
    object.remove("title");
    object.remove("description");
    object
}

/// The JSON schema of a tool's arguments, or why it is not one MCP
/// accepts: an input schema has an object at its root.
pub(super) fn input_schema<T: JsonSchema>() -> Result<Arc<JsonObject>, String> {
    let schema = generate::<T>(settings());
    match schema.get("type") {
        Some(Value::String(root)) if root == "object" => Ok(Arc::new(schema)),
        other => Err(format!(
            "a tool's input schema needs type object at its root, not {other:?}"
        )),
    }
}

/// The JSON schema of a tool's arguments. A type that is not an object
/// would be a bug that the unit tests catch; advertising its schema anyway
/// keeps the server from panicking over it at start.
pub(super) fn input<T: JsonSchema>() -> Arc<JsonObject> {
    input_schema::<T>().unwrap_or_else(|error| {
        let arguments = std::any::type_name::<T>();
        tracing::error!(%error, arguments, "a tool's arguments are not an object schema");
        Arc::new(generate::<T>(settings()))
    })
}

/// The JSON schema of a tool's structured content: what `T` serializes to
/// on success, or a [`ToolError`] when the call is refused. Every tool's
/// output schema is built here, so none can leave the refusal out.
///
/// The root is `{"type": "object", "anyOf": [{"$ref": "#/$defs/<T>"},
/// {"$ref": "#/$defs/ToolError"}], "$defs": {…}}`; `type: object` at the
/// root is what MCP's schema for tools requires of an output schema.
pub(super) fn output<T: JsonSchema>() -> Arc<JsonObject> {
    let mut schema = generate::<Outcome<T>>(settings().for_serialize());
    schema.insert("type".into(), "object".into());
    Arc::new(schema)
}

/// A tool's structured content: one of its two shapes.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)] // Only its schema is used: results are built as JSON.
enum Outcome<T> {
    Success(T),
    Refusal(Box<ToolError>),
}

/// The structured content of a refused call (`isError: true`); the text
/// content starts with the same code and message (`CONFLICT: Plan already
/// claimed by another user`).
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(super) struct ToolError {
    pub(super) error: ErrorFacts,
}

/// What a program acts on when a call is refused. Besides `code` and
/// `message`, a refusal carries the facts of its kind, each present only
/// when it applies; clients must accept facts they do not know.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(super) struct ErrorFacts {
    /// UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, CONFLICT, INVALID_TRANSITION, BAD_USER_INPUT, STORAGE_UNAVAILABLE, TIMEOUT, RATE_LIMITED or INTERNAL; a string rather than an enum, so that a new code does not make older clients refuse the result.
    code: String,
    /// The sentence the text content gives after the code.
    message: String,
    /// INVALID_TRANSITION and a refused claim: the plan's status now.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Status")]
    current_status: Option<Status>,
    /// INVALID_TRANSITION: the statuses the plan can move to next.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<Status>")]
    allowed_statuses: Option<Vec<Status>>,
    /// INVALID_TRANSITION: each status the plan can move to next, with the tool that moves it there.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<AllowedTransition>")]
    allowed_transitions: Option<Vec<AllowedTransition>>,
    /// A refused claim: who holds the plan (user id); null when nobody does.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    claimed_by: Option<Option<String>>,
    /// BAD_USER_INPUT about one argument: its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    argument: Option<String>,
    /// CONFLICT: STALE_CLAIM (the claim_token is no longer the plan's) or BLOCKED (the plan waits for unfinished plans).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    reason: Option<String>,
    /// BLOCKED: the ids of the plans it waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<String>")]
    blocked_by: Option<Vec<String>>,
    /// BLOCKED: their statuses, in the same order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<Status>")]
    blocker_statuses: Option<Vec<Status>>,
    /// RESUME_REQUIRED: the cursor to resume from.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    last_cursor: Option<String>,
}

/// A status a plan can move to, and the tool that moves it there.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct AllowedTransition {
    status: Status,
    /// The tool to call (release_plan, update_plan, submit_work, set_plan_status …).
    operation: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::super::call::error_result;
    use super::*;
    use crate::error::{AppError, Argument, Blocker, InputProblem};
    use crate::workflow::{Action, PlanStatus, Step};

    fn portable(schema: Value) -> Value {
        let Ok(mut schema) = Schema::try_from(schema) else {
            unreachable!("an object literal is a schema");
        };
        Portable.transform(&mut schema);
        schema.to_value()
    }

    #[test]
    fn a_nullable_property_becomes_any_of_with_its_annotations_kept() {
        let schema = portable(json!({
            "description": "When the claim stalls",
            "type": ["string", "null"],
            "format": "date-time",
        }));

        assert_eq!(
            schema,
            json!({
                "description": "When the claim stalls",
                "anyOf": [{ "type": "string", "format": "date-time" }, { "type": "null" }],
            })
        );
    }

    #[test]
    fn a_nullable_enum_keeps_its_values_in_the_branch_of_their_type() {
        let schema = portable(json!({
            "type": ["string", "null"],
            "enum": ["draft", "ready", null],
            "default": null,
        }));

        assert_eq!(
            schema,
            json!({
                "default": null,
                "anyOf": [{ "type": "string", "enum": ["draft", "ready"] }, { "type": "null" }],
            })
        );
    }

    #[test]
    fn formats_outside_json_schema_are_dropped_and_unsigned_keeps_its_bound() {
        let schema = portable(json!({
            "type": "object",
            "properties": {
                "total": { "type": "integer", "format": "uint64", "minimum": 0 },
                "added": { "type": "integer", "format": "uint" },
                "priority": { "type": ["integer", "null"], "format": "int32" },
                "ratio": { "type": "number", "format": "double" },
                "id": { "type": "string", "format": "uuid" },
            },
        }));

        assert_eq!(
            schema["properties"],
            json!({
                "total": { "type": "integer", "minimum": 0 },
                "added": { "type": "integer", "minimum": 0 },
                "priority": { "anyOf": [{ "type": "integer" }, { "type": "null" }] },
                "ratio": { "type": "number" },
                "id": { "type": "string", "format": "uuid" },
            })
        );
    }

    /// Every fact a refusal carries is described by `ErrorFacts`, so a
    /// refusal stays valid against the output schemas it is checked with.
    #[test]
    fn every_fact_of_a_refusal_is_in_the_tool_error_schema() {
        let plan = Uuid::nil();
        let refusals = [
            AppError::Conflict("Plan already claimed by another user".into()),
            AppError::InvalidTransition {
                current: PlanStatus::Claimed,
                requested: Action::SetStatus(PlanStatus::InProgress),
                allowed: vec![Step {
                    to: PlanStatus::Ready,
                    via: Action::Release,
                }],
            },
            AppError::NotClaimable {
                current: PlanStatus::Claimed,
                claimed_by: Some(plan),
                claimed_by_caller: false,
                holder: Some(("agent@example.com".into(), Some(chrono::Utc::now()))),
            },
            AppError::NotClaimable {
                current: PlanStatus::Draft,
                claimed_by: None,
                claimed_by_caller: false,
                holder: None,
            },
            AppError::invalid(
                Argument::PlanId,
                InputProblem::NotAnId {
                    value: "plan_abc123".into(),
                },
            ),
            AppError::StaleClaim { plan },
            AppError::Blocked {
                blockers: vec![Blocker {
                    id: plan,
                    title: "Schema".into(),
                    status: PlanStatus::Ready,
                }],
            },
            AppError::ResumeRequired {
                last_cursor: "42".into(),
            },
        ];
        let schema = Value::Object((*output::<Value>()).clone());
        let facts = &schema["$defs"]["ErrorFacts"];
        let described: Vec<&str> = facts["properties"]
            .as_object()
            .map(|properties| properties.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(facts["required"], json!(["code", "message"]));

        for refusal in &refusals {
            let result = error_result(refusal);
            let content = result.structured_content.unwrap_or_default();
            let names: Vec<&String> = content
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            assert_eq!(names, ["error"], "{content}");
            for (name, _) in content["error"].as_object().into_iter().flatten() {
                assert!(
                    described.contains(&name.as_str()),
                    "{} carries {name}, which ErrorFacts does not describe",
                    refusal.code()
                );
            }
        }
    }
}

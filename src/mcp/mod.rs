//! The seed's plan tools for AI assistants, over the Model Context Protocol
//! (Streamable HTTP) at `/mcp`, beside GraphQL on the same server.
//!
//! Only a transport: tools parse arguments, call the same [`Services`] use
//! cases as the GraphQL resolvers and format what they return, so a change
//! made here reaches GraphQL queries and `planEvents` subscribers at once.

mod call;
mod drift;
mod features;
mod fleet;
mod plan_reads;
mod plans;
mod projects;
mod schema;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool_handler};
use serde_json::json;

use crate::auth::bearer_token;
use crate::error::{AppError, AppResult, Interface};
use crate::service::{Services, Viewer};

/// The `/mcp` endpoint: the MCP service behind API-key authentication.
///
/// Stateless (no `Mcp-Session-Id`): every POST carries its own key and is
/// answered on its own, so several instances behind a load balancer serve one
/// client without sticky sessions, and no long-lived stream holds up a
/// graceful shutdown. Answers are plain JSON whenever a tool sends no
/// progress notifications, which none of ours do.
pub fn service(services: Services, max_body_bytes: usize) -> Router {
    let tools = Tools::new(services.clone());
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(max_body_bytes)
        // The Host allow-list guards local servers against DNS rebinding: a
        // web page that reaches the server through the victim's browser.
        // Here every request needs an API key, which such a page does not
        // have, and the server runs under whatever host name it is deployed
        // with, so the loopback-only default would only refuse real clients.
        .disable_allowed_hosts();
    let mcp = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .fallback_service(mcp)
        .layer(from_fn_with_state(services, require_api_key))
}

/// Refuses a request without a valid API key with HTTP 401 before any MCP
/// processing, as MCP clients expect of an HTTP transport; otherwise hands the
/// caller on to the tools in the request's extensions.
async fn require_api_key(
    State(services): State<Services>,
    mut request: Request,
    next: Next,
) -> Response {
    match authenticate(&services, request.headers()).await {
        Ok(viewer) => {
            request.extensions_mut().insert(viewer);
            next.run(request).await
        }
        Err(error) => refusal(&error),
    }
}

/// The caller named by the request's `Authorization: Bearer <API key>`.
async fn authenticate(services: &Services, headers: &HeaderMap) -> AppResult<Viewer> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(|| {
            AppError::Unauthenticated(
                "The MCP endpoint needs an API key: send Authorization: Bearer pg_…".into(),
            )
        })?;
    services.authenticate(token).await
}

/// A short JSON body for a request refused before MCP: 401 with the Bearer
/// challenge for a missing or bad key, 503/500 when the key could not be
/// checked at all (so a client retries rather than asks for a new key).
fn refusal(error: &AppError) -> Response {
    let status = match error {
        AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        AppError::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body =
        json!({ "error": { "code": error.code(), "message": error.message_for(Interface::Mcp) } });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"plangraph\""),
        );
    }
    response
}

/// The MCP server: every tool, each domain's from its own module. One per
/// request (it is stateless), cheap to clone.
#[derive(Clone)]
pub struct Tools {
    services: Services,
    tool_router: Arc<ToolRouter<Tools>>,
}

impl Tools {
    pub fn new(services: Services) -> Tools {
        Tools {
            services,
            tool_router: Arc::new(Tools::router()),
        }
    }

    /// Every tool with its schemas; tools/list answers from it.
    fn router() -> ToolRouter<Tools> {
        Tools::plan_tools()
            + Tools::fleet_tools()
            + Tools::feature_tools()
            + Tools::project_tools()
            + Tools::drift_tools()
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "plangraph",
    instructions = "plangraph: plan-driven development. Projects hold features (what to build) and implementation plans (how to build it). A plan moves draft -> ready -> claimed -> in_progress -> review -> completed; completing it creates a new feature version. Planning: list_projects, get_feature, create_plan, set_plan_status ready. Working, as one agent of a fleet: loop claim_next_plan (the most urgent unblocked ready plan, or work sent back to you from review, first) -> read the spec it returns -> update_plan with progress and heartbeat_plan before lease_expires_at -> submit_work; pass the claim_token from the claim's answer to every call (it is shown only there; an agent that lost it calls release_plan without a token and claims the plan again for a new one). A refusal CONFLICT (STALE_CLAIM) means your claim is over: stop working on that plan and claim another. When claim_next_plan says no plan is ready it says why: done (stop), needs a person (escalate), wait (retry later) or skipped as drifted. A plan written against an older feature spec says so in every answer: read get_spec_diff, then rebase_plan. Ids are UUIDs. Errors start with a code: FORBIDDEN, NOT_FOUND, CONFLICT, INVALID_TRANSITION, BAD_USER_INPUT; their structured content repeats it with the facts (an INVALID_TRANSITION lists allowed_transitions: each reachable status and the tool that reaches it)."
)]
impl ServerHandler for Tools {}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Every `format` and `type` keyword anywhere in `schema`, as
    /// (JSON pointer, problem) for each one a client might not read alike.
    fn unportable(schema: &Value, at: &str, found: &mut Vec<String>) {
        match schema {
            Value::Object(object) => {
                for (key, value) in object {
                    let here = format!("{at}/{key}");
                    match (key.as_str(), value) {
                        ("type", Value::Array(_)) => {
                            found.push(format!("{here}: type array {value}"))
                        }
                        ("format", Value::String(format))
                            if !schema::is_standard_format(format) =>
                        {
                            found.push(format!("{here}: format {format}"));
                        }
                        _ => unportable(value, &here, found),
                    }
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    unportable(item, &format!("{at}/{index}"), found);
                }
            }
            _ => {}
        }
    }

    /// Every `$ref` in `schema` points into the schema's own `$defs`.
    fn dangling_refs(schema: &Value, root: &Value, found: &mut Vec<String>) {
        match schema {
            Value::Object(object) => {
                if let Some(Value::String(target)) = object.get("$ref") {
                    let resolves = target
                        .strip_prefix('#')
                        .and_then(|pointer| root.pointer(pointer))
                        .is_some();
                    if !resolves {
                        found.push(target.clone());
                    }
                }
                for value in object.values() {
                    dangling_refs(value, root, found);
                }
            }
            Value::Array(items) => {
                for item in items {
                    dangling_refs(item, root, found);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_tool_schema_uses_only_standard_formats_and_no_type_arrays() {
        let tools = Tools::router().list_all();
        assert!(tools.len() > 20, "{} tools", tools.len());

        let mut found = Vec::new();
        for tool in &tools {
            let input = Value::Object((*tool.input_schema).clone());
            unportable(&input, &format!("{} input", tool.name), &mut found);
            if let Some(output) = &tool.output_schema {
                let output = Value::Object((**output).clone());
                unportable(&output, &format!("{} output", tool.name), &mut found);
            }
        }

        assert!(found.is_empty(), "{}", found.join("\n"));
    }

    /// Clients validate the structured content of refusals too, so every
    /// output schema offers the tool's own shape or the refusal's.
    #[test]
    fn every_output_schema_allows_the_tool_error_and_resolves_its_refs() {
        for tool in Tools::router().list_all() {
            let Some(output) = &tool.output_schema else {
                panic!("{} has no output schema", tool.name);
            };
            let output = Value::Object((**output).clone());
            assert_eq!(output["type"], "object", "{}: {output}", tool.name);
            let branches = output["anyOf"].as_array().cloned().unwrap_or_default();
            assert_eq!(branches.len(), 2, "{}: {output}", tool.name);
            assert!(
                branches.contains(&serde_json::json!({ "$ref": "#/$defs/ToolError" })),
                "{}: {output}",
                tool.name
            );
            let mut dangling = Vec::new();
            dangling_refs(&output, &output, &mut dangling);
            assert!(dangling.is_empty(), "{}: {dangling:?}", tool.name);
            let input = Value::Object((*tool.input_schema).clone());
            assert!(
                !input.to_string().contains("$ref"),
                "{}: {input}",
                tool.name
            );
        }
    }
}
